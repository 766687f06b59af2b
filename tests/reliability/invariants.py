"""The crash-safety invariants of issue 11 (R1), checked against libvirt and the state files.

``broken(world)`` returns the first invariant that does not hold, as one line, or None.
The test polls it until the agent has settled, and fails with the last line and the seed.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt

from tests.reliability.chaos_world import ChaosWorld

Check = Callable[[ChaosWorld], str | None]


def _domains_match_manifests(world: ChaosWorld) -> str | None:
    domains = world.our_domains()
    for name in sorted(domains):
        if name in world.removed:
            return f"orphan domain: {name} is still defined after its manifest was removed"
        if name not in world.vmis:
            return f"orphan domain: {name} has no manifest"
    for name in sorted(world.vmis):
        if name not in domains:
            return f"manifest without its domain: {name}"
    return None


def _guests_run_as_expected(world: ChaosWorld) -> str | None:
    for name, (dom, _identity) in sorted(world.our_domains().items()):
        vmi = world.vmis.get(name)
        if vmi is None or vmi.qats:
            continue
        try:
            state, reason = dom.state()
        except libvirt.libvirtError as error:
            return f"{name}: cannot read its state ({error})"
        running = state == libvirt.VIR_DOMAIN_RUNNING
        if vmi.stopped_inside and running and not vmi.changed_while_running:
            return f"{name} powered itself off but runs again"
        if not vmi.stopped_inside and not running:
            return f"{name} should run but is in state {state} (reason {reason})"
    return None


def _no_vf_twice(world: ChaosWorld) -> str | None:
    holder: dict[str, str] = {}
    for name, (_dom, identity) in sorted(world.our_domains().items()):
        for device in identity.devices:
            bdf = str(device.bdf)
            if bdf in holder:
                return f"VF {bdf} is in two domains: {holder[bdf]} and {name}"
            holder[bdf] = name
    return None


def _allocations_match_domains(world: ChaosWorld) -> str | None:
    document = world.read_json("allocations.json") or {"allocations": {}}
    records = {key.partition("/")[2]: entry for key, entry in document.get("allocations", {}).items()}
    domains = world.our_domains()
    for name, entry in sorted(records.items()):
        if name not in domains:
            return f"allocation record without a domain: {name}"
        recorded = sorted(d["bdf"] for d in entry.get("devices", []))
        held = sorted(str(d.bdf) for d in domains[name][1].devices)
        if recorded != held:
            return f"allocation record of {name} says {recorded}, its domain holds {held}"
    for name, (_dom, identity) in sorted(domains.items()):
        if identity.devices and name not in records:
            return f"domain without an allocation record: {name} holds {[str(d.bdf) for d in identity.devices]}"
    return None


def _status_matches(world: ChaosWorld) -> str | None:
    document = world.read_json("status.json")
    if not isinstance(document, dict) or not isinstance(document.get("vmis"), dict):
        return f"status.json does not parse as the agent's status file: {str(document)[:200]}"
    statuses = {key.partition("/")[2]: value for key, value in document["vmis"].items()}
    for name in sorted(world.removed & set(statuses)):
        return f"delete lost: {name} was removed but its status is still {statuses[name].get('phase')}"
    domains = world.our_domains()
    for name, vmi in sorted(world.vmis.items()):
        status = statuses.get(name)
        if status is None:
            return f"no status for {name}"
        phase = status.get("phase")
        if phase == "Failed":
            return f"{name} falsely Failed: {status.get('conditions')}"
        if vmi.qats:
            expected = "Scheduled"  # defined, but QEMU cannot start a VFIO guest here
        elif vmi.stopped_inside and not vmi.changed_while_running:
            expected = "Succeeded"
        else:
            expected = "Running"
        if phase != expected:
            return f"{name} is {phase} in status.json, expected {expected}"
        if name in domains and status.get("domain") != domains[name][0].name():
            return f"status of {name} names domain {status.get('domain')}"
    return None


CHECKS: tuple[Check, ...] = (
    _domains_match_manifests,
    _no_vf_twice,
    _allocations_match_domains,
    _guests_run_as_expected,
    _status_matches,
)
DESCRIPTIONS = (
    "no orphan domain, no manifest without its domain",
    "no VF in two domains",
    "allocation records match the domains both ways",
    "guests run, or stay off after powering themselves off",
    "status.json parses and matches the domains; nothing falsely Failed; no delete lost",
)


def broken(world: ChaosWorld) -> str | None:
    for check in CHECKS:
        problem = check(world)
        if problem is not None:
            return problem
    return None
