"""When the webhook's CA and serving certificate are made again: the rule, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handler.core.cert_rotation import CertFacts, Rotation, TlsLifetimes, bundle_keeps, plan_rotation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFE = TlsLifetimes()
NAMES = frozenset({"qat-handler-webhook.qat-handler.svc", "qat-handler-webhook"})


def ca(issued: datetime = T0) -> CertFacts:
    return CertFacts(issued, issued + LIFE.ca)


def cert(issued: datetime = T0, names: frozenset[str] = NAMES, signed: bool = True) -> CertFacts:
    return CertFacts(issued, issued + LIFE.cert, names, signed)


@pytest.mark.parametrize(
    ("now", "action"),
    [
        (T0 + timedelta(days=1), Rotation.KEEP),
        (T0 + timedelta(days=243), Rotation.KEEP),  # 122 of 365 days left: more than a third
        (T0 + timedelta(days=244), Rotation.ISSUE_CERT),  # 121 left: renew now
        (T0 + timedelta(days=400), Rotation.ISSUE_CERT),  # expired
        (T0 - timedelta(days=1), Rotation.ISSUE_CERT),  # not yet valid: the clock went back
    ],
)
def test_the_serving_cert_is_renewed_when_a_third_of_its_life_is_left(now: datetime, action: Rotation) -> None:
    assert plan_rotation(ca(T0 - timedelta(days=10)), cert(), NAMES, now).action is action


def test_the_ca_is_renewed_when_a_third_of_its_life_is_left_with_a_new_cert() -> None:
    now = T0 + LIFE.ca * (2 / 3) + timedelta(days=1)
    fresh = cert(now - timedelta(days=5))
    plan = plan_rotation(ca(), fresh, NAMES, now)
    assert plan.action is Rotation.NEW_CA and "the CA expires" in plan.reason
    assert plan_rotation(ca(), fresh, NAMES, now - timedelta(days=2)).action is Rotation.KEEP


@pytest.mark.parametrize(
    ("ca_facts", "cert_facts", "action", "reason"),
    [
        (None, None, Rotation.NEW_CA, "no CA yet"),
        (ca(), None, Rotation.ISSUE_CERT, "no serving certificate yet"),
        (ca(), cert(signed=False), Rotation.ISSUE_CERT, "not signed by the current CA"),
        (ca(), cert(names=frozenset({"other"})), Rotation.ISSUE_CERT, "does not name"),
        (ca(), cert(), Rotation.KEEP, "valid"),
    ],
)
def test_missing_foreign_or_misnamed_certificates_are_made_again(
    ca_facts: CertFacts | None, cert_facts: CertFacts | None, action: Rotation, reason: str
) -> None:
    plan = plan_rotation(ca_facts, cert_facts, NAMES, T0 + timedelta(days=1))
    assert plan.action is action and reason in plan.reason


def test_the_previous_ca_stays_in_the_bundle_until_it_expires() -> None:
    old = ca()
    assert bundle_keeps(old, old.not_after - timedelta(seconds=1))
    assert not bundle_keeps(old, old.not_after)
    assert not bundle_keeps(None, T0)
