"""VMI status for bare metal, kept in one JSON file in the state directory.

Writes are coalesced: a burst of status changes (1,000 VMIs starting) costs one atomic,
fsynced file replacement rather than 1,000. The file lags memory by at most
``flush_delay`` seconds; what is lost in a crash is rebuilt from libvirt on restart. A file
that cannot be written (a full disk) is written again, with backoff, until it can be: the
records stay in memory meanwhile, and the file catches up with all of them at once.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from handler.baremetal.status_json import status_from_json, status_to_json
from handler.core.actions import RecordEvent
from handler.core.backoff import Backoff
from handler.core.status import VMIStatus
from handler.ops.atomic_file import StateNotWritable, write_state_file

STATUS_FILE = "status.json"
FORMAT_VERSION = 1
EVENTS_KEPT = 10
_HEAD = f'{{"version": {FORMAT_VERSION}, "vmis": {{\n'.encode()
_TAIL = b"\n}}\n"

WRITE_RETRY = Backoff(1.0, 30.0)
"""Between attempts to write a file that could not be written."""

_SORTED = json.JSONEncoder(sort_keys=True)
"""What ``json.dumps(..., sort_keys=True)`` builds per call, kept."""

log = structlog.get_logger("qat_handler.status")


@dataclass(slots=True)
class _Record:
    status: VMIStatus | None
    created: float
    transitions: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


class StatusStore:
    def __init__(
        self,
        state_dir: Path,
        flush_delay: float = 0.05,
        wall: Callable[[], float] = time.time,
        retry: Backoff = WRITE_RETRY,
        on_write_failure: Callable[[str], None] = lambda _file: None,
    ) -> None:
        self.path = state_dir / STATUS_FILE
        self.flush_delay = flush_delay
        self._retry = retry
        self._on_write_failure = on_write_failure
        """Told the file's name at every failed write (the agent counts them in its metrics)."""
        self._wall = wall
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._keys: list[str] = []
        """Every key written to the file, sorted; ``_lines`` holds each one's line, in the same order."""
        self._lines: list[bytes] = []
        self._stale: set[str] = set()
        """Keys changed or forgotten since the last flush: a flush re-encodes (or drops) only these."""
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        state_dir.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- the StatusSink port ----------------------------------------------------------
    def claim(self, key: str) -> None:
        """Nothing to take: manifests are removed by the operator, never deleted under us."""

    def last_status(self, key: str) -> VMIStatus | None:
        with self._lock:
            record = self._records.get(key)
            return record.status if record else None

    def write(self, key: str, status: VMIStatus) -> None:
        now = self._wall()
        with self._lock:
            record = self._records.setdefault(key, _Record(None, now))
            before = {c.type: c.status for c in record.status.conditions} if record.status else {}
            for condition in status.conditions:
                if before.get(condition.type) != condition.status:
                    record.transitions[condition.type] = now
            record.status = status
            self._stale.add(key)
        self._mark_dirty()

    def record_event(self, key: str, event: RecordEvent) -> None:
        now = self._wall()
        entry = {
            "time": now,
            "type": "Warning" if event.warning else "Normal",
            "reason": event.reason,
            "message": event.message,
        }
        with self._lock:
            record = self._records.setdefault(key, _Record(None, now))
            record.events = [*record.events, entry][-EVENTS_KEPT:]
            self._stale.add(key)
        self._mark_dirty()

    def forget(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)
            self._stale.add(key)
        self._mark_dirty()

    def keys(self) -> list[str]:
        """Every VMI with a status (for the pass that forgets those left by a crash)."""
        with self._lock:
            return list(self._records)

    # -- persistence ------------------------------------------------------------------
    def start(self) -> None:
        self._flusher = threading.Thread(target=self._flush_loop, name="status-flush", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        self._closing.set()
        self._dirty.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)
        try:
            self.flush()
        except StateNotWritable as error:  # the next start rebuilds the file from libvirt
            log.error("status file could not be written at stop", error=str(error))

    def flush(self) -> None:
        """Replace the file with every record, one VMI per line (sorted); fsynced."""
        with self._lock:
            self._dirty.clear()
            self._patch_lines()
            body = b",\n".join(self._lines)
        # Written in three pieces: joining the lines into the whole document, then encoding that,
        # copied the file's ~0.7 MB (1,000 VMIs) three more times on every flush.
        write_state_file(self.path, (_HEAD, body, _TAIL))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {k: self._encode(r) for k, r in self._records.items()}

    def _mark_dirty(self) -> None:
        self._dirty.set()

    def _flush_loop(self) -> None:
        failures = 0
        while not self._closing.is_set():
            self._dirty.wait()
            if self._closing.is_set():
                return
            time.sleep(self.flush_delay)  # let the burst finish
            try:
                self.flush()
            except StateNotWritable as error:
                failures += 1
                self._on_write_failure(STATUS_FILE)
                wait = self._retry.delay(failures)
                log.error("status file could not be written", error=str(error), retry_seconds=wait)
                self._dirty.set()  # nothing changed since is no reason to leave the file behind
                self._closing.wait(wait)
                continue
            if failures:
                log.info("status file written again", path=str(self.path), failed_attempts=failures)
                failures = 0

    def _patch_lines(self) -> None:
        """Bring ``_lines`` up to date by touching only the stale keys' slots (lock held)."""
        keys, lines = self._keys, self._lines
        for key in self._stale:
            record = self._records.get(key)
            slot = bisect.bisect_left(keys, key)
            present = slot < len(keys) and keys[slot] == key
            if record is None:
                if present:
                    del keys[slot], lines[slot]
            elif present:
                lines[slot] = self._line(key, record)
            else:
                keys.insert(slot, key)
                lines.insert(slot, self._line(key, record))
        self._stale.clear()

    @classmethod
    def _line(cls, key: str, record: _Record) -> bytes:
        return f"{json.dumps(key)}: {_SORTED.encode(cls._encode(record))}".encode()

    @staticmethod
    def _encode(record: _Record) -> dict[str, Any]:
        body = status_to_json(record.status, record.transitions) if record.status else {}
        return {**body, "created": record.created, "events": record.events}

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.error("status file unreadable; starting empty", path=str(self.path), error=str(error))
            return
        for key, data in (document.get("vmis") or {}).items():
            transitions = {c["type"]: c.get("lastTransitionTime") or 0.0 for c in data.get("conditions", [])}
            self._records[key] = _Record(
                status_from_json(data) if data.get("phase") else None,
                data.get("created", self._wall()),
                transitions,
                list(data.get("events", [])),
            )
        self._stale.update(self._records)


def read_status_file(state_dir: Path) -> dict[str, Any]:
    """The VMIs section of the state file, for ``qat-handler status`` (a separate process)."""
    try:
        document = json.loads((state_dir / STATUS_FILE).read_text())
    except FileNotFoundError:
        return {}
    vmis = document.get("vmis")
    return vmis if isinstance(vmis, dict) else {}
