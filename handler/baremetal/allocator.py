"""The bare-metal VF allocator: VMIs without an env file get free, checked VFs from the agent.

Every allocation is written (atomically, fsynced) to ``<state-dir>/allocations.json``
before the domain that uses it is defined, and dropped only after the domain is
undefined. Together with the domains' own metadata this means one VF never reaches two
VMIs, whatever moment the agent crashes at. An allocation that cannot be written (a full
disk) is not made: the VMI waits, and its reconcile says why in one line and tries again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from handler.core.bdf import Bdf
from handler.core.device_codec import ALLOCATION_RECORDS, ALLOCATOR, decode, encode
from handler.core.device_env import AssignedDevice
from handler.core.domain_state import ObservedDomain
from handler.core.numa import NumaTopology
from handler.core.permitted_devices import PermittedDevices
from handler.core.qat_services import offers
from handler.core.refusal import Refusal, Refused
from handler.core.vmi import VMI
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inspector import HostInspector
from handler.host.numa_topology import read_numa_topology
from handler.ops.atomic_file import StateNotWritable, write_state_file

log = structlog.get_logger("qat_handler.allocator")

ALLOCATIONS_FILE = "allocations.json"
SOURCE = ALLOCATOR
SNAPSHOT_SECONDS = 2.0
"""How long a host scan may serve as the list of candidates; each pick is re-checked fresh anyway."""


class VfAllocator:
    def __init__(
        self,
        state_dir: Path,
        host_root: Path,
        permitted: PermittedDevices | None = None,
        on_write_failure: Callable[[str], None] = lambda _file: None,
    ) -> None:
        self.path = state_dir / ALLOCATIONS_FILE
        self._on_write_failure = on_write_failure
        self.host_root = host_root
        self._lock = threading.Lock()
        self._records: dict[str, tuple[str, tuple[AssignedDevice, ...]]] = {}
        self._fresh = FreshDeviceChecks(host_root, permitted)
        self._inspector = HostInspector(self._fresh)
        self._scanned_at = float("-inf")
        self._numa: NumaTopology | None = None
        self._unsaved = False
        """The file lags the records (a write failed): the next change, or a release, writes it."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- the DeviceAllocator port ----------------------------------------------------------
    def allocate(self, vmi: VMI, taken_elsewhere: Callable[[Bdf], bool]) -> tuple[AssignedDevice, ...]:
        """The VMI's VFs: its recorded ones if it has them, else free ones, recorded before return."""
        with self._lock:
            recorded = self._records.get(vmi.key)
            if recorded is not None and recorded[0] == vmi.uid and _same_requests(recorded[1], vmi):
                return recorded[1]
            held = {d.bdf for key, (_, devices) in self._records.items() if key != vmi.key for d in devices}
            # All VFs from one NUMA node when some node can serve them, so the guest can sit beside them.
            per_node = (self._choose(vmi, held, taken_elsewhere, node) for node in self._nodes_to_try())
            chosen = next((found for found in per_node if found is not None), None)
            if chosen is None:
                chosen = self._choose(vmi, held, taken_elsewhere, None, refuse=True)
            assert chosen is not None
            previous = self._records.get(vmi.key)
            self._records[vmi.key] = (vmi.uid, tuple(chosen))
            try:
                self._save()
            except StateNotWritable:
                # Not recorded, not given: a guest must never hold a VF the file does not show.
                if previous is None:
                    del self._records[vmi.key]
                else:
                    self._records[vmi.key] = previous
                raise
        log.info("VFs allocated", vmi=vmi.key, uid=vmi.uid, bdfs=[str(d.bdf) for d in chosen])
        return tuple(chosen)

    def release(self, key: str) -> None:
        """Free the VMI's VFs. If the file cannot be written they are free all the same (their
        domain is gone, and a restart drops a record with neither domain nor manifest), and
        StateNotWritable makes the caller's reconcile retry until the file is right again."""
        with self._lock:
            released = self._records.pop(key, None) is not None
            if not released and not self._unsaved:
                return
            self._save()
        if released:
            log.info("VFs released", vmi=key)

    def adopt(self, domains: Iterable[ObservedDomain], known_keys: set[str]) -> None:
        """After a restart: a domain's metadata wins over the records, and records of VMIs that
        are gone (no manifest, no domain) are released."""
        with self._lock:
            with_domain: set[str] = set()
            for domain in domains:
                identity = domain.identity
                if identity is None:
                    continue
                with_domain.add(identity.key)
                allocated = tuple(d for d in identity.devices if d.source == SOURCE)
                if allocated:
                    self._records[identity.key] = (identity.uid, allocated)
            for key in [k for k in self._records if k not in known_keys and k not in with_domain]:
                del self._records[key]
            try:
                self._save()
            except StateNotWritable as error:  # the records in memory are right; the next change writes them
                log.error("allocation records could not be written", error=str(error))

    def assignments(self) -> dict[str, tuple[AssignedDevice, ...]]:
        with self._lock:
            return {key: devices for key, (_, devices) in self._records.items()}

    # -- picking ------------------------------------------------------------------------------
    def _nodes_to_try(self) -> list[int]:
        """NUMA nodes, when there are several; the device nodes never change while the host runs."""
        if self._numa is None:
            self._numa = read_numa_topology(self.host_root) or NumaTopology(())
        return [node.id for node in self._numa.nodes] if len(self._numa.nodes) > 1 else []

    def _choose(
        self, vmi: VMI, held: set[Bdf], taken_elsewhere: Callable[[Bdf], bool], node: int | None, refuse: bool = False
    ) -> list[AssignedDevice] | None:
        """A VF for every request (on ``node`` when given); None, or Refused with ``refuse``, if one is short."""
        chosen: list[AssignedDevice] = []
        nodes = self._numa.device_nodes if self._numa is not None else {}
        for request in vmi.devices:
            used = held | {d.bdf for d in chosen}

            def unavailable(candidate: Bdf, used: set[Bdf] = used) -> bool:
                off_node = node is not None and nodes.get(candidate) != node
                return off_node or candidate in used or taken_elsewhere(candidate)

            bdf = self._pick(request.resource, unavailable)
            if bdf is None:
                if refuse:
                    raise Refused(_exhausted(vmi, request.resource, len(vmi.devices)))
                return None
            chosen.append(AssignedDevice(request.name, request.resource, bdf, SOURCE))
        return chosen

    def _pick(self, resource: str, unavailable: Callable[[Bdf], bool]) -> Bdf | None:
        now = time.monotonic()
        if now - self._scanned_at > SNAPSHOT_SECONDS:
            self._inspector.refresh()
            self._scanned_at = now
        inventory = self._inspector.snapshot()
        services = {pf.bdf: pf.services for pf in inventory.pfs}
        for bdf in self._inspector.usable_vfs(resource):
            if unavailable(bdf):
                continue
            function = self._inspector.function(bdf)
            if not offers(services.get(function.physfn) if function.physfn else None, resource):
                continue
            if self._fresh.check(bdf, resource) is None:  # the scan may be up to SNAPSHOT_SECONDS old
                return bdf
        return None

    # -- the records file ---------------------------------------------------------------------
    def _save(self) -> None:
        self._unsaved = True
        document = {
            "version": 1,
            "allocations": {
                key: {
                    "uid": uid,
                    "devices": [encode(device, ALLOCATION_RECORDS) for device in devices],
                }
                for key, (uid, devices) in sorted(self._records.items())
            },
        }
        try:
            write_state_file(self.path, json.dumps(document, indent=1).encode())
        except StateNotWritable:
            self._on_write_failure(ALLOCATIONS_FILE)
            raise
        self._unsaved = False

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            # Refuse to guess: an unreadable record could hand a VF out twice.
            raise Refused(
                Refusal(
                    "AllocationsUnreadable",
                    str(self.path),
                    f"cannot be read ({error})",
                    "restore it from backup, or remove it after checking no VF is in two guests",
                )
            ) from None
        for key, entry in (document.get("allocations") or {}).items():
            devices = (decode(item, ALLOCATION_RECORDS) for item in entry.get("devices", []))
            self._records[key] = (str(entry.get("uid", "")), tuple(d for d in devices if d is not None))


def _same_requests(devices: tuple[AssignedDevice, ...], vmi: VMI) -> bool:
    return [(d.name, d.resource) for d in devices] == [(r.name, r.resource) for r in vmi.devices]


def _exhausted(vmi: VMI, resource: str, wanted: int) -> Refusal:
    return Refusal(
        "NoFreeVF",
        resource,
        f"has no free, usable VF left for {vmi.key} (it asks for {wanted})",
        "free a VF (remove another VMI), create more VFs (sriov_numvfs), or run `qat-handler doctor`",
    )
