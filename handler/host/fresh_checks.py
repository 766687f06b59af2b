"""Device checks that always read the host as it is now (no cache), safe from many threads."""

from __future__ import annotations

from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.device_rules import check_device, host_rules
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refusal
from handler.host.pci import read_pci_function


class FreshDeviceChecks:
    def __init__(self, host_root: Path, permitted: PermittedDevices | None = None) -> None:
        self.host_root = host_root
        self.permitted = permitted or PermittedDevices()
        self._rules = host_rules(self.permitted)

    def use(self, permitted: PermittedDevices) -> None:
        """Switch to a re-read permitted-devices list (SIGHUP); one assignment, so checks in
        flight see either the old rules or the new ones."""
        self.permitted = permitted
        self._rules = host_rules(permitted)

    def check(self, bdf: Bdf, resource: str | None) -> Refusal | None:
        return check_device(read_pci_function(self.host_root, bdf), resource, self._rules)
