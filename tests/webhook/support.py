"""Running ``qat-handler webhook`` as a user would, and talking to it as kube-apiserver does."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from handler.core.webhook_settings import VALIDATE_PATH, WebhookTlsSettings
from handler.kube.webhook_tls import ca_bundle_of, ensure_webhook_tls
from tests.support.fakekube import FakeApiServer
from tests.support.http_probe import free_port

REPO = Path(__file__).resolve().parents[2]
TLS = WebhookTlsSettings()
SERVICE_NAME = f"{TLS.service}.{TLS.namespace}.svc"
"""The name kube-apiserver checks the webhook's certificate for."""
WAIT = 20.0
"""Generous bound for anything that waits on a subprocess or a watch (never a timing assertion)."""


def now() -> datetime:
    return datetime.now(UTC)


def issue_certificates(server: FakeApiServer, at: datetime | None = None) -> bytes:
    """What the controller does: the Secrets, and the CA clients should trust."""
    api = server.api_client()
    ensure_webhook_tls(api, TLS, at or now())
    bundle = ca_bundle_of(api, TLS)
    assert bundle is not None
    return bundle


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


class Webhook:
    """A ``qat-handler webhook`` subprocess, reached at 127.0.0.1 with the Service's name verified."""

    def __init__(self, process: subprocess.Popen[str], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def connect(self, ca_pem: bytes) -> http.client.HTTPSConnection:
        context = client_context(ca_pem)
        connection = http.client.HTTPSConnection(SERVICE_NAME, self.port, context=context, timeout=WAIT)
        raw = socket.create_connection(("127.0.0.1", self.port), WAIT)
        connection.sock = context.wrap_socket(raw, server_hostname=SERVICE_NAME)
        return connection

    def post(self, ca_pem: bytes, body: Any) -> tuple[int, Any]:
        connection = self.connect(ca_pem)
        try:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            connection.request("POST", VALIDATE_PATH, data, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            text = answer.read()
        finally:
            connection.close()
        try:
            return answer.status, json.loads(text)
        except ValueError:
            return answer.status, text.decode()

    def review(self, ca_pem: bytes, request: dict[str, Any]) -> dict[str, Any]:
        status, body = self.post(
            ca_pem, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        )
        assert status == 200, body
        response: dict[str, Any] = body["response"]
        assert response["uid"] == request["uid"]
        return response

    def served_certificate(self, ca_pem: bytes) -> bytes:
        connection = self.connect(ca_pem)
        try:
            assert connection.sock is not None
            der = connection.sock.getpeercert(binary_form=True)
        finally:
            connection.close()
        assert der is not None
        return der

    def ready(self, ca_pem: bytes) -> bool:
        try:
            connection = self.connect(ca_pem)
            connection.request("GET", "/readyz")
            ok = connection.getresponse().status == 200
            connection.close()
            return ok
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return False


@contextmanager
def webhook_process(server: FakeApiServer, tmp_path: Path, *extra: str) -> Iterator[Webhook]:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    log = tmp_path / "webhook.log"
    argv = [sys.executable, "-m", "handler", "webhook", "--listen", f"127.0.0.1:{port}", "--log-format", "json", *extra]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("POD_NAMESPACE", None)
    with log.open("w") as sink:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        yield Webhook(process, port, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def bundle_of_configuration(server: FakeApiServer) -> bytes:
    config = server.get_object("validatingwebhookconfigurations", "", TLS.webhook_configuration)
    assert config is not None
    return base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
