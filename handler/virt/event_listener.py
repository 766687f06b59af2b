"""A daemon's lifecycle events, heard by a child process, so the agent's own connection stays off
libvirt's event loop.

Over a daemon's socket, a client that runs libvirt's event loop hands the socket to the loop
between calls, so every call wakes the loop thread twice; in Python each wake-up also takes the
interpreter lock from the workers (docs/benchmarks.md, the seventh round of P1). The loop, the
event callbacks and keepalive therefore run in a process of their own
(``event_listener_main.py``). This side reads its lines and reports when it stops: the daemon
closed the connection, keepalive gave up on it, or the process died.
"""

from __future__ import annotations

import contextlib
import json
import os
import site
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog

from handler.virt.domain_events import DomainEvent, lifecycle_event
from handler.virt.errors import ErrorKind, VirtError, connect_failed

START_SECONDS = 15.0
"""How long the listener may take to connect: Python's start-up, then libvirt's open."""
STOP_SECONDS = 2.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
log = structlog.get_logger("qat_handler.event_listener")


def listens_apart(uri: str) -> bool:
    """Whether ``uri`` reaches a daemon. ``test:///...`` runs libvirt's test driver inside the
    calling process, whose state no other process sees: its events must be heard in-process."""
    return uri.split(":", 1)[0] != "test"


class EventListener:
    def __init__(
        self,
        uri: str,
        on_event: Callable[[DomainEvent], None],
        on_stopped: Callable[[EventListener], None],
    ) -> None:
        self.uri = uri
        self._on_event = on_event
        self._on_stopped = on_stopped
        self._ready = threading.Event()
        self._failure: VirtError | None = None
        self._alive = False
        self._process: subprocess.Popen[str] | None = None

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start listening; raises VirtError(CONNECTION) if the daemon cannot be reached."""
        env = dict(os.environ)
        if _PACKAGE_ROOT not in site.getsitepackages():  # a checkout, not an install: show it the way
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "handler.virt.event_listener_main", self.uri],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # never hold the agent's own output open
                text=True,
                env=env,
            )
        except OSError as error:  # out of processes or memory: like an unreachable daemon, tried again
            message = f"cannot start the event listener: {error.strerror or error}"
            raise VirtError(ErrorKind.CONNECTION, 0, message, f"listen to {self.uri}") from None
        assert self._process.stdout is not None
        threading.Thread(target=self._read, args=(self._process.stdout,), name="libvirt-listener", daemon=True).start()
        if not self._ready.wait(START_SECONDS):
            self.close()
            raise VirtError(ErrorKind.CONNECTION, 0, f"no answer in {START_SECONDS:.0f} s", f"listen to {self.uri}")
        if self._failure is not None:
            self.close()
            raise self._failure

    def close(self) -> None:
        """Stop the process (its stdin closes, so it exits), and wait for it a little."""
        self._alive = False
        self._end_process()

    def _end_process(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _read(self, lines: IO[str]) -> None:
        try:
            for line in lines:
                try:
                    fields = json.loads(line)
                except ValueError:
                    continue  # only the listener writes there; a torn line is not an event
                self._handle(fields)
        except Exception:
            log.exception("libvirt event listener failed; reconnecting", connect=self.uri)
        finally:
            # End of file (the process exited), or this thread failed: either way nothing
            # more will be heard. End the process and reap it here, as nobody may call close()
            # on a listener that stopped by itself, and tell the connection.
            self._end_process()
            was_alive, self._alive = self._alive, False
            if self._failure is None and not self._ready.is_set():
                self._failure = VirtError(ErrorKind.CONNECTION, 0, "the listener exited", f"listen to {self.uri}")
            self._ready.set()
            if was_alive:
                self._on_stopped(self)

    def _handle(self, fields: list[Any]) -> None:
        kind = fields[0]
        if kind == "event":
            self._on_event(lifecycle_event(fields[1], fields[2], fields[3]))
        elif kind == "ready":
            self._alive = True
            self._ready.set()
        elif kind == "error":
            self._failure = connect_failed(self.uri, fields[1], fields[2])
            self._ready.set()
