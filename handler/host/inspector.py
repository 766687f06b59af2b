"""``HostInspector``: the reconciler's view of the host's passthrough devices.

Reads are cached until ``refresh()``, with no hidden expiry: call it at the start of each
reconcile pass (and after binding drivers), then ``check``/``usable_vfs`` as often as needed.
Not thread-safe: give each worker its own, or use ``read_pci_function`` (no shared state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.device_rules import DeviceRule, check_device, host_rules
from handler.core.pci_function import PciFunction
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refusal
from handler.host.inventory import Inventory, scan_inventory
from handler.host.pci import PciReader


class HostInspector:
    def __init__(self, host_root: Path, permitted: PermittedDevices) -> None:
        self.host_root = host_root
        self.permitted = permitted
        self.rules: tuple[DeviceRule, ...] = host_rules(permitted)
        self._reader = PciReader(host_root)
        self._inventory: Inventory | None = None
        self._functions: dict[Bdf, PciFunction] = {}

    def refresh(self) -> None:
        """Forget every read; the next call sees the host as it is now."""
        self._reader = PciReader(self.host_root)
        self._inventory = None
        self._functions = {}

    def snapshot(self) -> Inventory:
        """The whole host, scanned once per refresh."""
        if self._inventory is None:
            self._inventory = scan_inventory(self._reader, self.permitted)
            self._functions.update((vf.bdf, vf) for vf in self._inventory.vfs)
        return self._inventory

    def function(self, bdf: Bdf) -> PciFunction:
        """One function, read once per refresh (without scanning the whole host)."""
        function = self._functions.get(bdf)
        if function is None:
            function = self._functions[bdf] = self._reader.function(bdf)
        return function

    def check(self, bdf: Bdf, resource: str | None = None, extra_rules: Sequence[DeviceRule] = ()) -> Refusal | None:
        """Why ``bdf`` may not serve ``resource`` (None: any permitted resource), or None if it may.

        ``extra_rules`` run after the host rules: the in-use and pod-resources rules go there.
        """
        return check_device(self.function(bdf), resource, (*self.rules, *extra_rules))

    def usable_vfs(self, resource: str | None = None, extra_rules: Sequence[DeviceRule] = ()) -> tuple[Bdf, ...]:
        """Candidate functions that pass every rule for ``resource``, sorted by BDF."""
        rules = (*self.rules, *extra_rules)
        return tuple(vf.bdf for vf in self.snapshot().vfs if check_device(vf, resource, rules) is None)
