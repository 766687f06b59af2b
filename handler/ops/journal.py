"""journald's native protocol: one datagram of ``FIELD=value`` lines per entry, no libsystemd.

Values holding a newline use the binary-safe form (name, newline, 64-bit little-endian
length, raw bytes, newline). An entry too big for one datagram goes, as libsystemd does
it, in a sealed memfd passed over the socket with SCM_RIGHTS.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SOCKET_PATH = "/run/systemd/journal/socket"
IDENTIFIER = "qat-handler"

PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
"""syslog(3) priorities by structlog level name; there is no structlog level for notice (5)."""

_ALIASES = {"vmi": "VMI", "uid": "VMI_UID", "domain": "DOMAIN", "bdf": "QAT_BDF", "bdfs": "QAT_BDF"}
_OURS = frozenset({"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER"})
_SKIPPED = frozenset({"event", "level", "timestamp"})
_INVALID = re.compile(r"[^A-Z0-9_]")
_MAX_NAME = 64

_SEND_TIMEOUT = 2.0
"""A stalled journald must not stall the reconcile loop past its watchdog; the entry goes to stderr."""
_SEND_BUFFER = 8 * 1024 * 1024
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


@dataclass(frozen=True, slots=True)
class JournalEntry:
    fields: tuple[tuple[str, str], ...]
    """(NAME, value) pairs in order; a name may repeat (one pair per BDF)."""

    def encode(self) -> bytes:
        out = bytearray()
        for name, value in self.fields:
            raw = value.encode("utf-8", "backslashreplace")
            if b"\n" in raw:
                out += name.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                out += name.encode() + b"=" + raw + b"\n"
        return bytes(out)

    def readable(self) -> str:
        """One line for stderr, led by ``<priority>`` so a journal stdout stream still gets the level."""
        values = dict(self.fields)
        rest = " ".join(f"{name}={value}" for name, value in self.fields if name not in _OURS)
        return f"<{values.get('PRIORITY', '6')}>{values.get('MESSAGE', '')} {rest}".rstrip()


def field_name(key: str) -> str:
    """Map a log key to a journal field name: ``[A-Z0-9_]``, not led by ``_`` or a digit, ≤ 64."""
    alias = _ALIASES.get(key)
    if alias:
        return alias
    name = _INVALID.sub("_", key.upper()).lstrip("_")
    if not name or name[0].isdigit() or name in _OURS:
        name = f"FIELD_{name}"
    return name[:_MAX_NAME]


def journal_entry(event: Mapping[str, Any]) -> JournalEntry:
    """Build the entry for one structlog event dict (after ``add_log_level``)."""
    fields = [
        ("MESSAGE", _text(event.get("event", ""))),
        ("PRIORITY", str(PRIORITIES.get(str(event.get("level")), 6))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
    ]
    for key, value in event.items():
        if key not in _SKIPPED:
            fields.extend((field_name(key), text) for text in _values(value))
    return JournalEntry(tuple(fields))


def _values(value: object) -> Iterator[str]:
    """A field per element for sequences (journald keeps repeated fields); nothing for None."""
    if value is None:
        return
    if isinstance(value, list | tuple):
        for item in value:
            yield _text(item)
    elif isinstance(value, set | frozenset):
        yield from sorted(_text(item) for item in value)
    elif isinstance(value, dict):
        yield json.dumps(value, sort_keys=True, default=str)
    else:
        yield _text(value)


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not turn a log call into a crash
        return f"<unprintable {type(value).__name__}>"


class JournalSender:
    """Sends entries to journald; ``send`` raises OSError and leaves the fallback to the caller."""

    def __init__(self, path: str = SOCKET_PATH) -> None:
        self._path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # As libsystemd does: fewer entries need the memfd path; the kernel caps it at wmem_max.
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self._sock.settimeout(_SEND_TIMEOUT)

    def send(self, entry: JournalEntry) -> None:
        data = entry.encode()
        try:
            self._sock.sendto(data, self._path)
        except OSError as error:
            if error.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # journald only maps memfds from non-root senders once they are sealed.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._sock.sendmsg([], rights, 0, self._path)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()
