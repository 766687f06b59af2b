"""What the hypervisor remembers about domains between calls, to save round trips to libvirtd.

A handle is used only on the connection it came from. A domain counts as ours only if this
agent defined it or read its owner from it; every other domain is read from libvirt each time.
"""

from __future__ import annotations

import threading

import libvirt


class RecentHandles:
    """Domain handles by name, taken once; the oldest go first, so a define never followed by a
    start (a guest defined halted) cannot pile up."""

    KEPT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, libvirt.virDomain] = {}

    def put(self, name: str, dom: libvirt.virDomain) -> None:
        with self._lock:
            self._handles.pop(name, None)
            self._handles[name] = dom
            if len(self._handles) > self.KEPT:
                del self._handles[next(iter(self._handles))]

    def take(self, name: str) -> libvirt.virDomain | None:
        with self._lock:
            return self._handles.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._handles.clear()


class OwnDomains:
    """UUIDs of the domains known to carry this agent's identity, so their XML need not be read
    again to tell them from foreign ones. Pruned to the domains that still exist at each read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._uuids: set[str] = set()

    def add(self, owner: str | None, uuid: str) -> None:
        """``owner`` None: defined by this agent, which renders its own owner into every domain."""
        with self._lock:
            if owner is None or owner == self._owner:
                self._uuids.add(uuid)

    def discard(self, uuid: str) -> None:
        with self._lock:
            self._uuids.discard(uuid)

    def keep_only(self, owner: str, existing: set[str]) -> frozenset[str]:
        """The known UUIDs of ``owner`` among ``existing`` (all are forgotten if the owner changed)."""
        with self._lock:
            if self._owner is not None and owner != self._owner:  # one agent has one owner
                self._uuids = set()
            self._owner = owner
            self._uuids &= existing
            return frozenset(self._uuids)
