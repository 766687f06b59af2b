"""One libvirt connection that notices when it breaks and reopens on next use.

Lifecycle events are heard on every (re)opened connection: for a daemon's URI by a listener
process of its own (``event_listener.py``), which also tells when the daemon goes away; for
libvirt's in-process test driver on this connection, through libvirt's event loop. Nothing is
logged from the thread that delivers events: callbacks only hand small values to the agent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import libvirt

from handler.core.backoff import Backoff
from handler.virt.domain_events import DomainEvent, lifecycle_event
from handler.virt.errors import ErrorKind, VirtError, classify, unreachable, wrap
from handler.virt.event_listener import EventListener, listens_apart
from handler.virt.event_loop import ensure_event_loop

# libvirt prints every error to stderr by default; we report them ourselves, once.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

RECONNECT = Backoff(0.5, 4.0)
"""Between failed attempts to reopen the connection; the first attempt after a break is immediate."""
SPARES_KEPT = 4
"""Idle spare connections kept open for the next long call (more are opened when needed)."""


class Connection:
    def __init__(
        self,
        uri: str,
        on_event: Callable[[DomainEvent], None],
        on_reopen: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        listen_apart: bool | None = None,
    ) -> None:
        """``listen_apart``: hear events in a listener process (None: for every URI that reaches a daemon)."""
        self.uri = uri
        self._apart = listens_apart(uri) if listen_apart is None else listen_apart
        self._listener: EventListener | None = None
        self._on_event = on_event
        self._on_reopen = on_reopen
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._clock = clock
        self._opened_once = False
        self._last_attempt = 0.0
        self._failed_opens = 0
        self._spares: list[libvirt.virConnect] = []

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and self._alive(conn)

    @property
    def listener_pid(self) -> int | None:
        """The listener process's, while there is one."""
        listener = self._listener
        return listener.pid if listener is not None else None

    def _alive(self, conn: libvirt.virConnect) -> bool:
        # A connection off the event loop cannot tell that its daemon went; the listener can.
        if self._apart:
            listener = self._listener
            return listener is not None and listener.alive
        return bool(conn.isAlive() == 1)

    def get(self) -> libvirt.virConnect:
        """The live connection, reopened if it broke; raises VirtError(CONNECTION) if libvirt is unreachable."""
        conn = self._conn
        if conn is not None and self._alive(conn):
            return conn
        if conn is not None:
            self.drop(conn)
        reopened = False
        with self._lock:
            if self._conn is None:
                self._open_locked()
                reopened = self._opened_once
                self._opened_once = True
            conn = self._conn
        assert conn is not None
        if reopened:
            self._on_reopen()
        return conn

    def drop(self, conn: libvirt.virConnect) -> None:
        """Forget ``conn`` after a call on it failed with a connection-class error (libvirtd went
        away or restarted): the next get() opens a new one. Its close callback may never come."""
        with self._lock:
            if self._conn is not conn:
                return
            self._conn = None
            listener, self._listener = self._listener, None
        _close_quietly(conn)
        if listener is not None:
            listener.close()

    def failed(self, conn: libvirt.virConnect, error: libvirt.libvirtError, operation: str) -> VirtError:
        """``error`` from ``operation`` on ``conn``, wrapped; a connection-class one drops ``conn``."""
        wrapped = wrap(error, operation)
        if wrapped.kind is ErrorKind.CONNECTION:
            self.drop(conn)
        return wrapped

    @contextlib.contextmanager
    def spare(self) -> Iterator[libvirt.virConnect]:
        """A connection of its own for one call that may block for seconds (a destroy).

        libvirtd serves at most ``max_client_requests`` (5 by default) calls of one connection at
        once and queues the rest, so long calls on the shared connection would wait for each other.
        """
        with self._lock:
            conn = self._spares.pop() if self._spares else None
        if conn is not None and conn.isAlive() != 1:  # kept across a libvirtd restart: useless now
            _close_quietly(conn)
            conn = None
        if conn is None:
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as error:
                raise unreachable(self.uri, error) from None
        healthy = True
        try:
            yield conn
        except libvirt.libvirtError as error:
            healthy = classify(error) is not ErrorKind.CONNECTION
            raise
        finally:
            with self._lock:
                keep = healthy and len(self._spares) < SPARES_KEPT
                if keep:
                    self._spares.append(conn)
            if not keep:
                _close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            spares, self._spares = self._spares, []
            listener, self._listener = self._listener, None
        for each in [conn, *spares]:
            if each is not None:
                _close_quietly(each)
        if listener is not None:
            listener.close()

    def _open_locked(self) -> None:
        wait = self._last_attempt + RECONNECT.delay(self._failed_opens) - self._clock()
        if wait > 0:
            message = f"reconnect pending (in {wait:.1f} s, after {self._failed_opens} failed attempt(s))"
            raise VirtError(ErrorKind.CONNECTION, 0, message, f"connect {self.uri}")
        self._last_attempt = self._clock()
        listener = None
        if self._apart:  # listening first: no event of what this connection does is missed
            listener = EventListener(self.uri, self._on_event, self._listener_stopped)
            try:
                listener.start()
            except VirtError:
                self._failed_opens += 1
                raise
        else:
            ensure_event_loop()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as error:
            self._failed_opens += 1
            if listener is not None:
                listener.close()
            raise unreachable(self.uri, error) from None
        self._failed_opens = 0
        if listener is None:
            conn.registerCloseCallback(self._closed, None)
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None)
        self._listener = listener
        self._conn = conn

    def _closed(self, conn: libvirt.virConnect, _reason: int, _opaque: object) -> None:
        # Runs on the event thread: only forget the connection; the next get() reopens it.
        if self._conn is conn:
            self._conn = None

    def _listener_stopped(self, listener: EventListener) -> None:
        # Runs on the listener's reader thread. The daemon went away (or the listener died):
        # forget the connection and the spares, which cannot notice it themselves; the next
        # get() opens both again. Calls still running on them keep their own reference.
        with self._lock:
            if self._listener is not listener:
                return
            self._listener = None
            self._conn = None
            self._spares = []

    def _lifecycle(self, _conn: object, dom: libvirt.virDomain, event: int, detail: int, _opaque: object) -> None:
        self._on_event(lifecycle_event(dom.name(), event, detail))


def _close_quietly(conn: libvirt.virConnect) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
