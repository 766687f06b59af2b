"""``HostInspector``: the whole host scanned once per pass, judged by ``FreshDeviceChecks``.

Reads are cached until ``refresh()``, with no hidden expiry: call it at the start of each
pass, then ``snapshot``/``check``/``usable_vfs`` as often as needed. The permitted list and
the rules belong to the checks it is given (so a SIGHUP that switches them reaches both).
Not thread-safe: give each worker its own, or use ``FreshDeviceChecks.check``.
"""

from __future__ import annotations

from collections.abc import Sequence

from handler.core.bdf import Bdf
from handler.core.device_rules import DeviceRule
from handler.core.pci_function import PciFunction
from handler.core.refusal import Refusal
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inventory import Inventory, scan_inventory
from handler.host.pci import PciReader


class HostInspector:
    def __init__(self, checks: FreshDeviceChecks) -> None:
        self.checks = checks
        self._reader = PciReader(checks.host_root)
        self._inventory: Inventory | None = None
        self._functions: dict[Bdf, PciFunction] = {}

    def refresh(self) -> None:
        """Forget every read; the next call sees the host as it is now."""
        self._reader = PciReader(self.checks.host_root)
        self._inventory = None
        self._functions = {}

    def snapshot(self) -> Inventory:
        """The whole host, scanned once per refresh."""
        if self._inventory is None:
            self._inventory = scan_inventory(self._reader, self.checks.permitted)
            self._functions.update((vf.bdf, vf) for vf in self._inventory.vfs)
        return self._inventory

    def function(self, bdf: Bdf) -> PciFunction:
        """One function, read once per refresh (without scanning the whole host)."""
        function = self._functions.get(bdf)
        if function is None:
            function = self._functions[bdf] = self._reader.function(bdf)
        return function

    def check(self, bdf: Bdf, resource: str | None = None, extra_rules: Sequence[DeviceRule] = ()) -> Refusal | None:
        """``FreshDeviceChecks.judge`` on this pass's read of ``bdf``.

        ``extra_rules`` run after the host rules: the in-use and pod-resources rules go there.
        """
        return self.checks.judge(self.function(bdf), resource, extra_rules)

    def usable_vfs(self, resource: str | None = None, extra_rules: Sequence[DeviceRule] = ()) -> tuple[Bdf, ...]:
        """Candidate functions that pass every rule for ``resource``, sorted by BDF."""
        judge = self.checks.judge
        return tuple(vf.bdf for vf in self.snapshot().vfs if judge(vf, resource, extra_rules) is None)
