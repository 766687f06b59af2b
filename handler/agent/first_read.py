"""The source's first read of every VMI, overlapped with reconciling.

The workers start while the source is still reading, so the VMIs read first are defined and
started while the rest are read. Until the read is complete, a VMI the source has not read yet
is not taken for removed (an adopted guest would be shut down because its manifest was still
unread), and a VMI that needs the allocator waits, as the allocator releases the records of
gone VMIs only once it knows every VMI. Both are put off, and queued again when the read ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from handler.core.desired import Desired


class FirstRead:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._complete = True
        """True unless a first read is under way (a source that reads before the workers start)."""
        self._put_off: set[str] = set()

    def begin(self) -> None:
        with self._lock:
            self._complete = False

    def done(self) -> list[str]:
        """The read is complete: the VMIs put off meanwhile, to be looked at again."""
        with self._lock:
            self._complete = True
            put_off, self._put_off = sorted(self._put_off), set()
        return put_off

    def look(self, key: str, fetch: Callable[[], Desired | None]) -> tuple[bool, Desired | None]:
        """What ``fetch`` finds for this VMI, and whether its pass must wait for the end of the
        read (then it is remembered). Fetched under the lock while reading, so the read cannot
        end between an empty answer and the decision to treat it as such."""
        if self._complete:  # only ever goes from False to True once workers run
            return False, fetch()
        with self._lock:
            found = fetch()
            if self._complete or (found is not None and not found.allocate):
                return False, found
            self._put_off.add(key)
            return True, found

    @property
    def complete(self) -> bool:
        with self._lock:
            return self._complete
