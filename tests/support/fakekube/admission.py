"""Validating admission webhooks, called as kube-apiserver calls them.

On every create and update (main resource or subresource) the store asks ``Admission.admit``
before it commits. The registered ``ValidatingWebhookConfiguration`` objects are read from the
store itself, so registering a webhook is an ordinary API create (``kubectl apply``, or the
client's ``create_validating_webhook_configuration``). A matching webhook gets a real
AdmissionReview v1 over HTTPS:

* ``clientConfig.url``, or ``clientConfig.service`` (namespace, name, port, path), which the
  fake routes to a local address registered with ``FakeApiServer.route_service``; the
  certificate is verified against ``caBundle`` for ``<name>.<namespace>.svc``, as
  kube-apiserver verifies it;
* ``timeoutSeconds`` (default 10) bounds the call; a failed or timed-out call denies under
  ``failurePolicy: Fail`` (500, "failed calling webhook") and is skipped under ``Ignore``;
* a denial comes back as the webhook's own Status (code < 400 raised to 400) with the
  message prefixed ``admission webhook "<name>" denied the request: ``.

The user is the ``Impersonate-User`` header (``kubectl --as``), else ``kubernetes-admin``.
Not modelled: namespaceSelector, objectSelector, matchConditions, version conversion.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError
from .resources import Obj, ResourceType

DEFAULT_USER = "kubernetes-admin"
WEBHOOK_CONFIGS = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")


@dataclass
class Admission:
    services: dict[tuple[str, str, int], tuple[str, int]] = field(default_factory=dict)
    """(namespace, service, port) -> the local address that answers for it."""
    calls: list[Obj] = field(default_factory=list)
    """Every AdmissionReview sent, for tests."""
    _local: threading.local = field(default_factory=threading.local)

    @property
    def user(self) -> str:
        return str(getattr(self._local, "user", None) or DEFAULT_USER)

    @user.setter
    def user(self, name: str | None) -> None:
        self._local.user = name

    def admit(
        self, configs: list[Obj], operation: str, rt: ResourceType, obj: Obj, old: Obj | None, sub: str | None
    ) -> None:
        """Raise ApiError when a webhook denies (or fails under failurePolicy Fail)."""
        resource = f"{rt.plural}/{sub}" if sub else rt.plural
        for config in configs:
            for hook in config.get("webhooks") or []:
                if _matches(hook, operation, rt, resource):
                    self._call(hook, _review(operation, rt, sub, obj, old, self.user))

    def _call(self, hook: Obj, review: Obj) -> None:
        name = str(hook.get("name"))
        try:
            response = self._post(hook, review)
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as error:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                return
            raise ApiError(
                500, f'failed calling webhook "{name}": failed to call webhook: {_describe(error)}', "InternalError"
            ) from None
        if response.get("uid") != review["request"]["uid"]:
            raise ApiError(500, f'failed calling webhook "{name}": expected response.uid to match the request.uid')
        if response.get("allowed") is True:
            return
        status = dict(response.get("status") or {})
        code = max(int(status.get("code") or 400), 400)
        denied = f'admission webhook "{name}" denied the request'
        text = status.get("message") or status.get("reason")
        message = f"{denied}: {text}" if text else f"{denied} without explanation"
        raise ApiError(code, message, status.get("reason") or "Forbidden", status.get("details"))

    def _post(self, hook: Obj, review: Obj) -> Obj:
        config = hook.get("clientConfig") or {}
        timeout = float(hook.get("timeoutSeconds") or 10)
        if config.get("url"):
            url = urlsplit(config["url"])
            hostname, address, path = url.hostname or "", (url.hostname or "", url.port or 443), url.path or "/"
        else:
            service = config.get("service") or {}
            namespace, svc, port = service.get("namespace"), service.get("name"), int(service.get("port") or 443)
            hostname, path = f"{svc}.{namespace}.svc", service.get("path") or "/"
            if (namespace, svc, port) not in self.services:
                raise OSError(f'Post "https://{hostname}:{port}{path}": no endpoints available for service "{svc}"')
            address = self.services[(namespace, svc, port)]
        context = ssl.create_default_context()
        if config.get("caBundle"):
            context = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
        connection = _Connection(hostname, address, context, timeout)
        try:
            self.calls.append(review)
            body = json.dumps(review).encode()
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise ValueError(f"the webhook answered {answer.status}: {data[:200]!r}")
        finally:
            connection.close()
        response = json.loads(data).get("response")
        if not isinstance(response, dict):
            raise ValueError("the webhook's AdmissionReview has no response")
        return response


class _Connection(http.client.HTTPSConnection):
    """Connects to ``address`` but verifies the certificate for ``hostname`` (a Service's DNS name)."""

    def __init__(self, hostname: str, address: tuple[str, int], context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(hostname, address[1], context=context, timeout=timeout)
        self._address, self._context = address, context

    def connect(self) -> None:
        raw = socket.create_connection(self._address, self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def _matches(hook: Obj, operation: str, rt: ResourceType, resource: str) -> bool:
    for rule in hook.get("rules") or []:
        if (
            _has(rule.get("operations"), operation)
            and _has(rule.get("apiGroups"), rt.group)
            and _has(rule.get("apiVersions"), rt.version)
            and _has(rule.get("resources"), resource)
            and rule.get("scope", "*") in ("*", "Namespaced" if rt.namespaced else "Cluster")
        ):
            return True
    return False


def _has(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def _review(operation: str, rt: ResourceType, sub: str | None, obj: Obj, old: Obj | None, user: str) -> Obj:
    meta = obj.get("metadata") or {}
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    resource = {"group": rt.group, "version": rt.version, "resource": rt.plural}
    request: Obj = {
        "uid": str(uuid.uuid4()),
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "operation": operation,
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
        "options": {"kind": f"{operation.title()}Options", "apiVersion": "meta.k8s.io/v1"},
    }
    if sub:
        request["subResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "context deadline exceeded"
    return str(error) or error.__class__.__name__
