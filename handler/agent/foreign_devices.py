"""PCI devices held by domains the agent does not manage.

Read from libvirt only when such a domain may have changed (a define or undefine
event for a name that is not ours), so checking 1,000 VMIs does not read every
domain 1,000 times.
"""

from __future__ import annotations

import threading

from handler.agent.ports import Hypervisor
from handler.core.bdf import Bdf


class ForeignDevices:
    def __init__(self, hypervisor: Hypervisor, owner: str) -> None:
        self._hypervisor = hypervisor
        self._owner = owner
        self._lock = threading.Lock()
        self._owners: dict[Bdf, str] | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._owners = None

    def owner(self, bdf: Bdf) -> str | None:
        with self._lock:
            if self._owners is None:
                self._owners = self._hypervisor.foreign_devices(self._owner)
            return self._owners.get(bdf)
