"""When the webhook's CA or serving certificate must be made again: a pure decision.

The shell reads the certificates into ``CertFacts`` and asks ``plan_rotation`` with the
current time, so the rule is tested with a fake clock. A certificate is renewed once less
than ``renew_fraction`` of its lifetime is left (cert-manager's default is a third), long
before it expires, so the webhook never serves an expired certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class CertFacts:
    not_before: datetime
    not_after: datetime
    dns_names: frozenset[str] = frozenset()
    signed_by_ca: bool = True
    """For a serving certificate: whether the current CA issued it."""

    def due(self, now: datetime, renew_fraction: float) -> bool:
        lifetime = self.not_after - self.not_before
        return now >= self.not_after - lifetime * renew_fraction or now < self.not_before


class Rotation(StrEnum):
    KEEP = "keep"
    ISSUE_CERT = "issue-cert"
    """A new serving certificate from the current CA."""
    NEW_CA = "new-ca"
    """A new CA and a new serving certificate; the old CA stays in the caBundle while it is valid."""


@dataclass(frozen=True, slots=True)
class RotationPlan:
    action: Rotation
    reason: str


@dataclass(frozen=True, slots=True)
class TlsLifetimes:
    ca: timedelta = timedelta(days=3650)
    cert: timedelta = timedelta(days=365)
    renew_fraction: float = 1 / 3
    backdate: timedelta = timedelta(minutes=5)
    """notBefore is set this far in the past, for clocks a little behind ours."""


def plan_rotation(
    ca: CertFacts | None,
    cert: CertFacts | None,
    wanted_names: frozenset[str],
    now: datetime,
    lifetimes: TlsLifetimes = TlsLifetimes(),
) -> RotationPlan:
    if ca is None:
        return RotationPlan(Rotation.NEW_CA, "no CA yet")
    if ca.due(now, lifetimes.renew_fraction):
        return RotationPlan(Rotation.NEW_CA, f"the CA expires at {ca.not_after.isoformat()}")
    if cert is None:
        return RotationPlan(Rotation.ISSUE_CERT, "no serving certificate yet")
    if not cert.signed_by_ca:
        return RotationPlan(Rotation.ISSUE_CERT, "the serving certificate is not signed by the current CA")
    if not wanted_names <= cert.dns_names:
        missing = ", ".join(sorted(wanted_names - cert.dns_names))
        return RotationPlan(Rotation.ISSUE_CERT, f"the serving certificate does not name {missing}")
    if cert.due(now, lifetimes.renew_fraction):
        return RotationPlan(Rotation.ISSUE_CERT, f"the serving certificate expires at {cert.not_after.isoformat()}")
    return RotationPlan(Rotation.KEEP, "valid")


def bundle_keeps(previous_ca: CertFacts | None, now: datetime) -> bool:
    """Whether the previous CA still belongs in the caBundle: until it expires, webhook replicas
    that have not yet read the new certificate still present one it signed."""
    return previous_ca is not None and now < previous_ca.not_after
