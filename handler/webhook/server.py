"""The webhook's HTTPS server: AdmissionReview v1 in, verdict out; health on the same port.

Each review reads the policy afresh (gates from the informers' caches, the permitted list),
so a gate turned on is honoured from the next review. Connections are kept alive, as
kube-apiserver reuses them; the TLS handshake runs in the connection's own thread.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from handler.core.admission import AdmissionPolicy, VmiRequest, decide
from handler.core.admission_review import BadReview, read_review, review_response
from handler.core.webhook_settings import VALIDATE_PATH
from handler.webhook.certs import CertSource, listening_context

log = structlog.get_logger("qat_handler.webhook")

MAX_BODY = 3 * 1024 * 1024
"""kube-apiserver's own request limit; a bigger review is refused, not read."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    policy: Callable[[], AdmissionPolicy]
    ready: Callable[[], bool]


class WebhookServer:
    def __init__(
        self,
        address: tuple[str, int],
        certs: CertSource,
        policy: Callable[[], AdmissionPolicy],
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._httpd = _Server(address, _Handler, bind_and_activate=True)
        self._httpd.policy = policy
        self._httpd.ready = lambda: ready() and certs.context() is not None
        # No handshake in accept(): a slow client must not hold up the others.
        self._httpd.socket = listening_context(certs).wrap_socket(
            self._httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="webhook-https", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one structured line per denial instead

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, b"ok", "text/plain")
        elif self.path == "/readyz":
            ready = self.server.ready()
            self._send(200 if ready else 503, b"ok" if ready else b"not ready", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        if self.path.split("?")[0] != VALIDATE_PATH:
            self._send(404, b"not found", "text/plain")
            return
        review = self._read_review()
        if review is None:
            return
        uid, request = review
        try:
            verdict = decide(request, self.server.policy())
        except Exception as error:  # a bug must cost one review (failurePolicy decides), never the server
            log.exception("review failed", operation=request.operation, error=str(error))
            self._send(500, b"internal error", "text/plain")
            return
        if not verdict.allowed:
            meta = (request.obj or {}).get("metadata") or {}
            name = str(meta.get("name") or meta.get("generateName") or "")
            log.info(
                "VMI refused",
                vmi="/".join((request.namespace, name)),
                operation=request.operation,
                fields=[cause.field for cause in verdict.causes],
                reason=verdict.message,
            )
        self._send(200, json.dumps(review_response(uid, verdict, request.name)).encode(), "application/json")

    def _read_review(self) -> tuple[str, VmiRequest] | None:
        """The review in the body, or None once a 400/413 has been answered."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(413 if length > MAX_BODY else 400, b"review too large or unsized", "text/plain")
            return None
        try:
            return read_review(json.loads(self.rfile.read(length)))
        except (ValueError, BadReview) as error:
            self._send(400, f"not an AdmissionReview v1: {error}".encode(), "text/plain")
            return None

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
