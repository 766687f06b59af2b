"""/metrics, /healthz and /readyz over HTTP, served from a daemon thread.

Probes are callables returning (ok, reason): ok gives 200, not ok 503, with the reason as
the body. A probe that raises counts as not ok; it must not take the server down.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, cast

Probe = Callable[[], tuple[bool, str]]


class Exposition(Protocol):
    """Metrics that render themselves for a scrape (the agent's, the controller's)."""

    def render(self, accept: str = "") -> tuple[bytes, str]: ...


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (all IPv4 interfaces) to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics address {text!r} is not HOST:PORT (e.g. 127.0.0.1:9471 or [::1]:9471)")
    return host.removeprefix("[").removesuffix("]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], metrics: Exposition, live: Probe, ready: Probe) -> None:
        self.metrics = metrics
        self.probes = {"/healthz": live, "/readyz": ready}
        super().__init__(address, _Handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a stuck client must not hold a thread forever
    server_version = "qat-handler"

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = server.metrics.render(self.headers.get("Accept", ""))
            self._reply(200, body, content_type)
        elif path in server.probes:
            ok, reason = _run(server.probes[path])
            self._reply(200 if ok else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes and probes every few seconds would drown the agent's own log."""


def _run(probe: Probe) -> tuple[bool, str]:
    try:
        return probe()
    except Exception as error:
        return False, f"probe failed: {error!r}"


class HealthServer:
    def __init__(self, address: str, metrics: Exposition, live: Probe, ready: Probe) -> None:
        self._address = parse_address(address)
        self._metrics = metrics
        self._live = live
        self._ready = ready
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve in a daemon thread; returns the bound port (useful with port 0)."""
        host, _ = self._address
        kind = _Server6 if ":" in host else _Server
        self._server = kind(self._address, self._metrics, self._live, self._ready)
        # A short poll keeps stop() (and so the agent's shutdown) from waiting half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="health-server", daemon=True
        )
        self._thread.start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
