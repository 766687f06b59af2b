"""Which VMI holds which VF, so that one VF never reaches two guests.

A claim is taken before a domain is defined and dropped only after the domain is
undefined. At start the table is rebuilt from the domains' own metadata.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from handler.core.bdf import Bdf


class DeviceClaims:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: dict[Bdf, str] = {}
        self._held: dict[str, set[Bdf]] = {}
        """The same table by holder, so one VMI's claims cost the same with 1 or 1,000 others."""

    def claim(self, key: str, bdfs: Iterable[Bdf]) -> tuple[Bdf, str] | None:
        """Claim all of ``bdfs`` for ``key``, or none: returns the first (bdf, holder) conflict."""
        wanted = list(bdfs)
        with self._lock:
            for bdf in wanted:
                holder = self._holder.get(bdf)
                if holder is not None and holder != key:
                    return bdf, holder
            self._release_locked(key)
            for bdf in wanted:
                self._holder[bdf] = key
            if wanted:
                self._held[key] = set(wanted)
            return None

    def release(self, key: str) -> None:
        with self._lock:
            self._release_locked(key)

    def _release_locked(self, key: str) -> None:
        for bdf in self._held.pop(key, ()):
            del self._holder[bdf]

    def holder(self, bdf: Bdf) -> str | None:
        with self._lock:
            return self._holder.get(bdf)

    def held_by(self, key: str) -> tuple[Bdf, ...]:
        with self._lock:
            return tuple(sorted(self._held.get(key, ())))

    def snapshot(self) -> dict[Bdf, str]:
        with self._lock:
            return dict(self._holder)
