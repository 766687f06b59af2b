"""Whether a PCI function may be passed through: the permitted list, its rules, and fresh reads.

This is the one place that judges devices. ``check`` reads the function as it is now, safe
from many threads; ``judge`` applies the same rules to a function already read (the cached
scan of ``HostInspector``, the doctor's inventory).

Every check reads the function's files and follows its own links (the bus entry, driver,
physfn, IOMMU group, group members, VFIO node) afresh, and the host facts with them. Only the
host root's real path and the real paths of the directories those links lead into are kept
between checks (``HostRoot``; ``use`` starts over): sysfs directories such as
``/sys/bus/pci/devices`` or a PF's folder are made by the kernel and never turn into links,
and resolving them again was more than half the work of a check. A kept directory that a check
finds to be a link after all is forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.device_rules import DeviceRule, check_device, host_rules
from handler.core.pci_function import PciFunction
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refusal
from handler.host.host_root import HostRoot
from handler.host.pci import read_pci_function

MAX_KEPT_DIRS = 8192
"""Directories whose real path is kept; past this (VFs coming and going for weeks) start over."""


class FreshDeviceChecks:
    def __init__(self, host_root: Path, permitted: PermittedDevices | None = None) -> None:
        self.host_root = host_root
        self.permitted = permitted or PermittedDevices()
        self._rules = host_rules(self.permitted)
        self._root = HostRoot(host_root)
        """The root's real path and the directories resolved under it, shared by every worker's checks."""

    def use(self, permitted: PermittedDevices) -> None:
        """Switch to a re-read permitted-devices list (SIGHUP); one assignment, so checks in
        flight see either the old rules or the new ones. The root and directories are resolved anew too."""
        self.permitted = permitted
        self._rules = host_rules(permitted)
        self._root = HostRoot(self.host_root)

    def check(self, bdf: Bdf, resource: str | None) -> Refusal | None:
        """Why ``bdf`` may not serve ``resource`` (None: any permitted resource) as the host is now."""
        root = self._root
        if len(root.dirs) > MAX_KEPT_DIRS:
            root.forget_dirs()
        return check_device(read_pci_function(root, bdf), resource, self._rules)

    def judge(
        self, function: PciFunction, resource: str | None, extra_rules: Sequence[DeviceRule] = ()
    ) -> Refusal | None:
        """The same rules for a function read elsewhere; ``extra_rules`` run after them."""
        return check_device(function, resource, (*self._rules, *extra_rules) if extra_rules else self._rules)
