"""Where the webhook's serving certificate comes from, swapped in without a restart.

Every TLS handshake asks the source for the current ``SSLContext`` (through the listening
context's SNI callback), so a renewed certificate is served from the next connection on.

* ``FileCerts``: two files given on the command line, re-read when either changes (a
  half-written pair fails to load and the previous certificate stays in use);
* ``SecretCerts``: the Secret the controller keeps (``tls.crt``, ``tls.key``), watched.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Protocol, Unpack

import structlog
from kubernetes import client

from handler.kube.informer import DEFAULT_WATCH, Informer, ListOptions, Obj, WatchSettings

log = structlog.get_logger("qat_handler.webhook")


class CertSource(Protocol):
    def context(self) -> ssl.SSLContext | None:
        """The context to serve with, or None while there is no certificate yet."""


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def listening_context(source: CertSource) -> ssl.SSLContext:
    """The context the socket listens with: it hands every handshake the source's current one."""
    listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener.minimum_version = ssl.TLSVersion.TLSv1_2  # versions are settled before the callback swaps contexts

    def pick(sock: ssl.SSLSocket | ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> int | None:
        current = source.context()
        if current is None:
            return int(ssl.AlertDescription.ALERT_DESCRIPTION_INTERNAL_ERROR)  # no certificate yet
        sock.context = current
        return None

    listener.sni_callback = pick
    return listener


class FileCerts:
    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int, int], ...] = ()
        self._context: ssl.SSLContext | None = None
        self.context()

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.cert_file, self.key_file):
            try:
                info = os.stat(path)
            except OSError:
                return ()
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def context(self) -> ssl.SSLContext | None:
        stamp = self._stat()  # two stat calls per handshake; kube-apiserver keeps connections open
        with self._lock:
            if stamp and stamp != self._stamp:
                try:
                    self._context = server_context(self.cert_file, self.key_file)
                    self._stamp = stamp
                    log.info("serving certificate loaded", cert_file=str(self.cert_file))
                except (OSError, ssl.SSLError) as error:
                    log.warning("certificate files unreadable; serving the previous one", error=str(error))
            return self._context


class SecretCerts:
    def __init__(
        self, api: client.ApiClient, stack_namespace: str, secret: str, settings: WatchSettings = DEFAULT_WATCH
    ) -> None:
        core = client.CoreV1Api(api)
        self.secret = f"{stack_namespace}/{secret}"
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="qat-handler-webhook-")

        def secrets(**options: Unpack[ListOptions]) -> object:
            return core.list_namespaced_secret(stack_namespace, **options)

        self.informer = Informer(
            "webhook-tls", secrets, self._changed, field_selector=f"metadata.name={secret}", settings=settings
        )

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()
        self._dir.cleanup()

    def context(self) -> ssl.SSLContext | None:
        with self._lock:
            return self._context

    def _changed(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            return  # keep serving the last certificate until a new one arrives
        data = obj.get("data") or {}
        try:
            cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
            folder = Path(self._dir.name)
            (folder / "tls.crt").write_bytes(cert)
            (folder / "tls.key").write_bytes(key)
            context = server_context(folder / "tls.crt", folder / "tls.key")
        except (KeyError, ValueError, OSError, ssl.SSLError) as error:
            log.warning("webhook Secret holds no usable certificate", secret=self.secret, error=str(error))
            return
        with self._lock:
            self._context = context
        log.info("serving certificate loaded", secret=self.secret)
