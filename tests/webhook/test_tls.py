"""The webhook's TLS with no manual step: ``ensure_webhook_tls`` against the fake API server, with
the clock passed in, and the running webhook picking up what it writes (or the files it is given)."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client

from handler.core.cert_rotation import Rotation
from handler.kube.tls_material import make_ca, make_serving_cert
from handler.kube.webhook_tls import WebhookTlsError, ensure_webhook_tls
from tests.support.fakekube import FakeApiServer
from tests.webhook.support import (
    REPO,
    SERVICE_NAME,
    TLS,
    bundle_of_configuration,
    now,
    wait_until,
    webhook_process,
)


def webhook_configuration() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "deploy" / "webhook.yaml").read_text())
    return next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")


def register(server: FakeApiServer) -> None:
    client.AdmissionregistrationV1Api(server.api_client()).create_validating_webhook_configuration(
        webhook_configuration()
    )


def secret(server: FakeApiServer, name: str) -> dict[str, bytes]:
    found = server.get_object("secrets", TLS.namespace, name)
    assert found is not None, f"no Secret {name}"
    return {key: base64.b64decode(value) for key, value in found["data"].items()}


def certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def test_first_call_makes_both_secrets_and_the_bundle_then_nothing_changes(fake_apiserver: FakeApiServer) -> None:
    register(fake_apiserver)
    api = fake_apiserver.api_client()
    first = ensure_webhook_tls(api, TLS, now())
    assert first.plan.action is Rotation.NEW_CA and first.configuration_found and first.bundle_patched
    ca, tls = secret(fake_apiserver, TLS.ca_secret), secret(fake_apiserver, TLS.tls_secret)
    assert sorted(tls) == ["ca.crt", "tls.crt", "tls.key"], "the webhook's Secret holds no CA key"
    assert fake_apiserver.get_object("secrets", TLS.namespace, TLS.tls_secret)["type"] == "kubernetes.io/tls"  # type: ignore[index]
    (served,) = certificates(tls["tls.crt"])
    served.verify_directly_issued_by(certificates(ca["ca.crt"])[0])
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_NAME in names.get_values_for_type(x509.DNSName)
    assert bundle_of_configuration(fake_apiserver) == ca["ca.crt"]
    writes = len(fake_apiserver.requests("PUT")) + len(fake_apiserver.requests("POST"))
    again = ensure_webhook_tls(api, TLS, now() + timedelta(days=30))
    assert again.plan.action is Rotation.KEEP and not again.bundle_patched
    assert len(fake_apiserver.requests("PUT")) + len(fake_apiserver.requests("POST")) == writes, "nothing rewritten"


def test_without_a_webhook_configuration_the_secrets_are_still_made(fake_apiserver: FakeApiServer) -> None:
    result = ensure_webhook_tls(fake_apiserver.api_client(), TLS, now())
    assert not result.configuration_found and not result.bundle_patched
    assert secret(fake_apiserver, TLS.tls_secret)["tls.crt"]


def test_a_refused_call_is_one_line_with_the_fix(fake_apiserver: FakeApiServer) -> None:
    fake_apiserver.fail_next("GET", "/secrets/", 403)
    with pytest.raises(WebhookTlsError) as caught:
        ensure_webhook_tls(fake_apiserver.api_client(), TLS, now())
    message = str(caught.value)
    assert "\n" not in message and "403 Forbidden" in message and "fix: grant" in message


def test_the_serving_cert_is_renewed_and_the_running_webhook_serves_the_new_one(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    register(fake_apiserver)
    api = fake_apiserver.api_client()
    ensure_webhook_tls(api, TLS, now() - timedelta(days=250))  # issued long ago: 115 of 365 days left
    old = secret(fake_apiserver, TLS.tls_secret)["tls.crt"]
    bundle = bundle_of_configuration(fake_apiserver)
    with webhook_process(fake_apiserver, tmp_path) as webhook:
        wait_until(lambda: webhook.ready(bundle), "the webhook becoming ready")
        assert webhook.served_certificate(bundle) == certificates(old)[0].public_bytes(Encoding.DER)
        renewed = ensure_webhook_tls(api, TLS, now())
        assert renewed.plan.action is Rotation.ISSUE_CERT and not renewed.bundle_patched, "same CA, same bundle"
        new = certificates(secret(fake_apiserver, TLS.tls_secret)["tls.crt"])[0]
        assert new.not_valid_after_utc > now() + timedelta(days=300)
        wait_until(
            lambda: webhook.served_certificate(bundle) == new.public_bytes(Encoding.DER), "the new certificate served"
        )


def test_a_new_ca_keeps_the_old_one_in_the_bundle_until_it_expires(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    register(fake_apiserver)
    api = fake_apiserver.api_client()
    ensure_webhook_tls(api, TLS, now() - timedelta(days=7 * 365))  # CA 3 of 10 years left: due
    old_ca = secret(fake_apiserver, TLS.ca_secret)["ca.crt"]
    fake_apiserver.clear_requests()
    result = ensure_webhook_tls(api, TLS, now())
    writes = [r.path.rsplit("/", 1)[-1] for r in fake_apiserver.requests() if r.method in ("POST", "PUT", "PATCH")]
    assert writes == [TLS.ca_secret, TLS.webhook_configuration, TLS.tls_secret], "trusted before it is served"
    assert result.plan.action is Rotation.NEW_CA and result.bundle_patched
    new_ca = secret(fake_apiserver, TLS.ca_secret)["ca.crt"]
    assert new_ca != old_ca and secret(fake_apiserver, TLS.tls_secret)["ca.crt"] == new_ca
    assert bundle_of_configuration(fake_apiserver) == new_ca + old_ca
    with webhook_process(fake_apiserver, tmp_path) as webhook:
        wait_until(lambda: webhook.ready(bundle_of_configuration(fake_apiserver)), "the webhook trusted via the bundle")
        assert not webhook.ready(old_ca), "the served certificate comes from the new CA"


def write_pair(folder: Path, stamp: str) -> bytes:
    """A CA and serving pair in ``folder``, replaced atomically as a Secret volume update would."""
    ca = make_ca(f"test CA {stamp}", now(), TLS.lifetimes)
    serving = make_serving_cert(ca, TLS.dns_names(), now(), TLS.lifetimes)
    for name, data in (("tls.crt", serving.cert_pem), ("tls.key", serving.key_pem)):
        (folder / f".{name}.new").write_bytes(data)
        os.replace(folder / f".{name}.new", folder / name)
    return ca.cert_pem


def test_given_files_are_served_and_re_read_when_they_change(fake_apiserver: FakeApiServer, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    first_ca = write_pair(certs, "one")
    args = ("--tls-cert-file", str(certs / "tls.crt"), "--tls-private-key-file", str(certs / "tls.key"))
    with webhook_process(fake_apiserver, tmp_path, *args) as webhook:
        wait_until(lambda: webhook.ready(first_ca), "the webhook serving the given files")
        second_ca = write_pair(certs, "two")
        wait_until(lambda: webhook.ready(second_ca), "the changed files being served")
        assert not webhook.ready(first_ca)
