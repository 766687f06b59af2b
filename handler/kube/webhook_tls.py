"""The webhook's TLS with no manual step: a CA and a serving certificate kept in Secrets, the
ValidatingWebhookConfiguration's caBundle kept in step, rotation before expiry.

``ensure_webhook_tls(api, settings, now)`` is idempotent and cheap when nothing is due; the
controller (only the leader) calls it periodically. Two Secrets keep least privilege: the
CA's key lives in ``<ca_secret>``, which only the caller reads; the webhook reads only
``<tls_secret>`` (``tls.crt``, ``tls.key``, ``ca.crt``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.core.cert_rotation import CertFacts, Rotation, RotationPlan, bundle_keeps, plan_rotation
from handler.core.webhook_settings import WebhookTlsSettings
from handler.kube.client import raw
from handler.kube.tls_material import KeyPair, facts, make_ca, make_serving_cert

log = structlog.get_logger("qat_handler.webhook_tls")

CA_CERT, CA_KEY, CA_PREVIOUS = "ca.crt", "ca.key", "ca-previous.crt"
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"


@dataclass(frozen=True, slots=True)
class TlsResult:
    plan: RotationPlan
    cert_not_after: datetime
    bundle_patched: bool
    """True when the caBundle was written now; False when it was already right or there is no configuration."""
    configuration_found: bool


class WebhookTlsError(Exception):
    """One line naming what failed and the fix."""


def ensure_webhook_tls(api: client.ApiClient, settings: WebhookTlsSettings, now: datetime) -> TlsResult:
    """Make, renew or keep the CA and serving certificate, and make the caBundle match. Raises
    WebhookTlsError (one line) when the API refuses; calling again later retries."""
    core = client.CoreV1Api(api)
    try:
        stack_namespace = settings.namespace
        ca_secret = _read_secret(core, stack_namespace, settings.ca_secret)
        tls_secret = _read_secret(core, stack_namespace, settings.tls_secret)
        ca, previous = _ca_of(ca_secret), _data(ca_secret, CA_PREVIOUS)
        cert_pem = _data(tls_secret, TLS_CERT)
        plan = plan_rotation(
            _facts(ca.cert_pem) if ca else None,
            _facts(cert_pem, ca.cert_pem if ca else None) if cert_pem else None,
            frozenset(settings.dns_names()),
            now,
            settings.lifetimes,
        )
        if plan.action is Rotation.NEW_CA:
            old = _facts(ca.cert_pem) if ca else None
            previous = ca.cert_pem if ca and bundle_keeps(old, now) else None
            ca = make_ca(f"qat-handler webhook CA {now:%Y-%m-%d}", now, settings.lifetimes)
            _write_secret(core, stack_namespace, settings.ca_secret, ca_secret, _ca_data(ca, previous), "Opaque")
        assert ca is not None
        # The bundle first: kube-apiserver must trust the new CA before any replica serves its certificate.
        bundle = ca.cert_pem + (previous if previous and bundle_keeps(_facts(previous), now) else b"")
        found, patched = _patch_ca_bundle(api, settings.webhook_configuration, bundle)
        if plan.action is not Rotation.KEEP:
            serving = make_serving_cert(ca, settings.dns_names(), now, settings.lifetimes)
            data = {TLS_CERT: serving.cert_pem, TLS_KEY: serving.key_pem, CA_CERT: ca.cert_pem}
            _write_secret(core, stack_namespace, settings.tls_secret, tls_secret, data, "kubernetes.io/tls")
            cert_pem = serving.cert_pem
            log.info("webhook certificate issued", action=str(plan.action), reason=plan.reason)
    except ApiException as error:
        raise WebhookTlsError(_describe(error, settings)) from None
    served = _facts(cert_pem) if cert_pem else None
    assert served is not None, "a serving certificate was kept or just made"
    return TlsResult(plan, served.not_after, patched, found)


def ca_bundle_of(api: client.ApiClient, settings: WebhookTlsSettings) -> bytes | None:
    """The CA certificate the webhook's Secret says clients should trust (for tests and doctor-style checks)."""
    return _data(_read_secret(client.CoreV1Api(api), settings.namespace, settings.tls_secret), CA_CERT)


def _facts(cert_pem: bytes, ca_pem: bytes | None = None) -> CertFacts | None:
    try:
        return facts(cert_pem, ca_pem)
    except ValueError:
        return None  # unreadable: made again


def _ca_of(secret: dict[str, Any] | None) -> KeyPair | None:
    cert, key = _data(secret, CA_CERT), _data(secret, CA_KEY)
    if cert is None or key is None:
        return None
    pair = KeyPair(cert, key)
    try:
        pair.private_key()
    except ValueError:
        return None
    return pair


def _ca_data(ca: KeyPair, previous: bytes | None) -> dict[str, bytes]:
    data = {CA_CERT: ca.cert_pem, CA_KEY: ca.key_pem}
    if previous:
        data[CA_PREVIOUS] = previous
    return data


def _read_secret(core: client.CoreV1Api, stack_namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return raw(core.read_namespaced_secret(name, stack_namespace, _preload_content=False))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _data(secret: dict[str, Any] | None, key: str) -> bytes | None:
    value = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(value) if isinstance(value, str) and value else None


def _write_secret(
    core: client.CoreV1Api,
    stack_namespace: str,
    name: str,
    current: dict[str, Any] | None,
    data: dict[str, bytes],
    kind: str,
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": stack_namespace,
            "labels": {"app.kubernetes.io/part-of": "qat-handler"},
        },
        "type": kind,
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }
    if current is None:
        core.create_namespaced_secret(stack_namespace, body)  # type: ignore[arg-type]  # the client sends dicts as they are
        return
    # The resourceVersion makes a concurrent writer's change a 409, never a silent overwrite.
    body["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
    core.replace_namespaced_secret(name, stack_namespace, body)  # type: ignore[arg-type]


def _patch_ca_bundle(api: client.ApiClient, name: str, bundle: bytes) -> tuple[bool, bool]:
    """(configuration found, patched now). One JSON patch, each entry guarded by a test of its name."""
    admission = client.AdmissionregistrationV1Api(api)
    try:
        config = raw(admission.read_validating_webhook_configuration(name, _preload_content=False))
    except ApiException as error:
        if error.status == 404:
            return False, False
        raise
    encoded = base64.b64encode(bundle).decode()
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(config.get("webhooks") or []):
        if (webhook.get("clientConfig") or {}).get("caBundle") == encoded:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")})
        ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded})
    if ops:
        admission.patch_validating_webhook_configuration(name, ops)
    return True, bool(ops)


def _describe(error: ApiException, settings: WebhookTlsSettings) -> str:
    where = f"Secrets {settings.ca_secret}/{settings.tls_secret} in {settings.namespace}"
    if error.status == 403:
        return (
            f"webhook TLS: 403 Forbidden on {where} or ValidatingWebhookConfiguration "
            f"{settings.webhook_configuration}; fix: grant the controller's ServiceAccount the rules in "
            "deploy/rbac-webhook-tls.yaml"
        )
    if error.status == 409:
        return f"webhook TLS: {where} changed while being written (409); it is retried on the next call"
    return f"webhook TLS: API error {error.status} {error.reason} on {where}; it is retried on the next call"


__all__ = ["TlsResult", "WebhookTlsError", "WebhookTlsSettings", "ca_bundle_of", "ensure_webhook_tls"]
