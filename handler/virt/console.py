"""An interactive serial console over a libvirt console stream, the way ``virsh console`` does it:
a nonblocking virStream and the terminal both watched by libvirt's default event loop, run
on the calling thread. Ctrl-] detaches.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections.abc import Iterator

import libvirt

ESCAPE = b"\x1d"
"""Ctrl-], as virsh and virtctl use."""
STREAM_CLOSED = "the console closed (the guest stopped, or another session took it with --force)"
_STREAM_EVENTS = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP


class ConsoleSession:
    """One attachment: bytes from ``stdin_fd`` go to the guest, the guest's go to ``stdout_fd``."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain, stdin_fd: int, stdout_fd: int) -> None:
        self.stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        self.dom = dom
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.outcome = ""
        """Why the session ended: ``detached``, ``input closed`` or :data:`STREAM_CLOSED`."""
        self._to_guest = b""
        self._writable = False

    def open(self, force: bool) -> None:
        """Raises libvirtError (e.g. another session holds the console and ``force`` is off)."""
        flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else libvirt.VIR_DOMAIN_CONSOLE_SAFE
        self.dom.openConsole(None, self.stream, flags)

    def run(self) -> str:
        watch = libvirt.virEventAddHandle(self.stdin_fd, libvirt.VIR_EVENT_HANDLE_READABLE, self._stdin_ready, None)
        self.stream.eventAddCallback(_STREAM_EVENTS, self._stream_ready, None)
        try:
            while not self.outcome:
                libvirt.virEventRunDefaultImpl()
        finally:
            libvirt.virEventRemoveHandle(watch)
            with contextlib.suppress(libvirt.libvirtError):
                self.stream.eventRemoveCallback()
            with contextlib.suppress(libvirt.libvirtError):
                self.stream.abort()
        return self.outcome

    def _stdin_ready(self, _watch: int, fd: int, _events: int, _opaque: object) -> None:
        data = os.read(fd, 1024)
        if not data:
            self.outcome = "input closed"
            return
        before, escape, _ = data.partition(ESCAPE)
        self._to_guest += before
        self._flush()
        if escape:
            self.outcome = "detached"

    def _stream_ready(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            self._drain(stream)
        if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._flush()
        if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP) and not self.outcome:
            self.outcome = STREAM_CLOSED

    def _drain(self, stream: libvirt.virStream) -> None:
        while True:
            try:
                data = stream.recv(4096)
            except libvirt.libvirtError:
                self.outcome = self.outcome or STREAM_CLOSED
                return
            if data == -2:  # nothing more for now
                return
            if not isinstance(data, bytes) or not data:
                self.outcome = self.outcome or STREAM_CLOSED
                return
            _write_all(self.stdout_fd, data)

    def _flush(self) -> None:
        while self._to_guest:
            try:
                sent = self.stream.send(self._to_guest)
            except libvirt.libvirtError:
                self.outcome = self.outcome or STREAM_CLOSED
                return
            if sent == -2:  # the stream is full: wait until libvirt says it is writable
                self._want_writable(True)
                return
            self._to_guest = self._to_guest[sent:]
        self._want_writable(False)

    def _want_writable(self, wanted: bool) -> None:
        if wanted != self._writable:
            self._writable = wanted
            extra = libvirt.VIR_STREAM_EVENT_WRITABLE if wanted else 0
            with contextlib.suppress(libvirt.libvirtError):
                self.stream.eventUpdateCallback(_STREAM_EVENTS | extra)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode while attached (keys go to the guest as typed), restored however the session ends."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
