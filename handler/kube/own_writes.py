"""The VMI as the agent's own last write left it, until the watch shows that version.

A status patch is guarded by the resourceVersion it was computed from. Taken from the
informer's cache right after the agent's own write (the finalizer, then the status, in one
pass), that version can be one the agent itself has just replaced: the patch would conflict
with the agent's own write. The object each patch returns is the newest the agent knows, so
it is used instead while the cache still shows a version one of our writes replaced.
"""

from __future__ import annotations

import threading
from typing import Any

from handler.kube.object_meta import resource_version, uid_of

SUPERSEDED_KEPT = 16
"""Replaced versions remembered per VMI; the watch normally catches up after one or two."""


class OwnWrites:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
        """Per key: the versions our writes replaced (oldest first), and the object the last one returned."""

    def wrote(self, key: str, replaced: str | None, result: object) -> None:
        """A patch of ``key`` based on version ``replaced`` answered ``result`` (the whole object)."""
        if not isinstance(result, dict) or not resource_version(result):
            return
        with self._lock:
            old = self._latest.get(key)
            superseded = old[0] + (resource_version(old[1]),) if old is not None else ()
            if replaced:
                superseded += (replaced,)
            self._latest[key] = (superseded[-SUPERSEDED_KEPT:], result)

    def freshest(self, key: str, cached: dict[str, Any] | None) -> dict[str, Any] | None:
        """``cached`` (the informer's copy), or our own newer result while the cache lags behind it."""
        if cached is None:
            return None
        with self._lock:
            own = self._latest.get(key)
            if own is None:
                return cached
            superseded, result = own
            if uid_of(result) == uid_of(cached) and resource_version(cached) in superseded:
                return result
            # The cache shows our last write, or a newer one, or another VMI of that name.
            del self._latest[key]
            return cached

    def forget(self, key: str) -> None:
        with self._lock:
            self._latest.pop(key, None)
