"""The fake API server calls validating webhooks as kube-apiserver does: matched by rules, over
HTTPS verified with the caBundle, bounded by timeoutSeconds, with failurePolicy honoured and a
denial returned as the webhook's Status prefixed with its name."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.core.cert_rotation import TlsLifetimes
from handler.kube.tls_material import make_ca, make_serving_cert
from tests.support.fakekube import FakeApiServer

Answer = Callable[[dict[str, Any]], dict[str, Any]]
NAMES = ["hook.example.svc"]


class Hook:
    """A tiny HTTPS webhook whose answer the test chooses."""

    def __init__(self, tmp_path: Path, answer: Answer) -> None:
        now = datetime.now(UTC)
        self.ca = make_ca("test", now, TlsLifetimes())
        pair = make_serving_cert(self.ca, NAMES, now, TlsLifetimes())
        (tmp_path / "c.pem").write_bytes(pair.cert_pem)
        (tmp_path / "k.pem").write_bytes(pair.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append(review)
                body = json.dumps({**review, "response": {"uid": review["request"]["uid"], **answer(review)}})
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.seen: list[dict[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])


def configuration(ca_pem: bytes, *, policy: str = "Fail", timeout: int = 2, operations: list[str] | None = None) -> Any:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "test"},
        "webhooks": [
            {
                "name": "configmaps.test.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": policy,
                "timeoutSeconds": timeout,
                "clientConfig": {
                    "service": {"namespace": "example", "name": "hook", "path": "/check", "port": 443},
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "operations": operations or ["CREATE", "UPDATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                    }
                ],
            }
        ],
    }


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        yield fake
        assert not fake.internal_errors


def setup(server: FakeApiServer, hook: Hook, **options: Any) -> client.CoreV1Api:
    api = server.api_client()
    ca = options.pop("ca", hook.ca.cert_pem)
    client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration(configuration(ca, **options))
    server.route_service("example", "hook", 443, ("127.0.0.1", hook.port))
    return client.CoreV1Api(api)


def config_map(name: str = "c", **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": data}


def denied(review: dict[str, Any]) -> dict[str, Any]:
    causes = [{"field": "data", "message": "no"}]
    return {
        "allowed": False,
        "status": {"code": 422, "reason": "Invalid", "message": "no", "details": {"causes": causes}},
    }


def test_a_denial_comes_back_as_the_webhooks_status_with_its_name(server: FakeApiServer, tmp_path: Path) -> None:
    hook = Hook(tmp_path, denied)
    core = setup(server, hook)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", config_map())
    status = json.loads(caught.value.body)
    assert caught.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == 'admission webhook "configmaps.test.io" denied the request: no'
    assert status["details"]["causes"] == [{"field": "data", "message": "no"}]
    assert server.get_object("configmaps", "default", "c") is None
    request = hook.seen[-1]["request"]
    assert request["operation"] == "CREATE" and request["object"]["metadata"]["uid"]
    assert request["userInfo"]["username"] == "kubernetes-admin"


def test_an_update_carries_the_old_object_and_the_user(server: FakeApiServer, tmp_path: Path) -> None:
    hook = Hook(tmp_path, lambda review: {"allowed": review["request"]["operation"] == "CREATE"})
    core = setup(server, hook)
    core.create_namespaced_config_map("default", config_map(a="1"))
    core.api_client.default_headers["Impersonate-User"] = "system:serviceaccount:x:y"
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("c", "default", {"data": {"a": "2"}})
    assert caught.value.status == 400, "a denial without a status is a 400"
    request = hook.seen[-1]["request"]
    assert request["oldObject"]["data"] == {"a": "1"} and request["object"]["data"] == {"a": "2"}
    assert request["userInfo"]["username"] == "system:serviceaccount:x:y"
    assert json.loads(caught.value.body)["message"].endswith("denied the request without explanation")


def test_only_matching_operations_and_resources_are_sent(server: FakeApiServer, tmp_path: Path) -> None:
    hook = Hook(tmp_path, denied)
    core = setup(server, hook, operations=["UPDATE"])
    core.create_namespaced_config_map("default", config_map())
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    assert hook.seen == []


def test_a_wrong_ca_bundle_fails_closed_and_ignore_lets_it_through(server: FakeApiServer, tmp_path: Path) -> None:
    hook = Hook(tmp_path, lambda _review: {"allowed": True})
    stranger = make_ca("stranger", datetime.now(UTC), TlsLifetimes()).cert_pem
    core = setup(server, hook, ca=stranger)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", config_map())
    assert caught.value.status == 500
    message = json.loads(caught.value.body)["message"]
    assert message.startswith('failed calling webhook "configmaps.test.io": failed to call webhook:')
    assert "CERTIFICATE_VERIFY_FAILED" in message and hook.seen == []
    admission = client.AdmissionregistrationV1Api(server.api_client())
    admission.patch_validating_webhook_configuration(
        "test", [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]
    )
    core.create_namespaced_config_map("default", config_map())


def test_a_slow_webhook_times_out(server: FakeApiServer, tmp_path: Path) -> None:
    def slow(_review: dict[str, Any]) -> dict[str, Any]:
        time.sleep(3)
        return {"allowed": True}

    core = setup(server, Hook(tmp_path, slow), timeout=1)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", config_map())
    assert "context deadline exceeded" in json.loads(caught.value.body)["message"]


def test_no_endpoint_for_the_service_fails_closed(server: FakeApiServer) -> None:
    api = server.api_client()
    ca = make_ca("x", datetime.now(UTC), TlsLifetimes()).cert_pem
    client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration(configuration(ca))
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(api).create_namespaced_config_map("default", config_map())
    assert 'no endpoints available for service "hook"' in json.loads(caught.value.body)["message"]
