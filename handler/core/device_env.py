"""Which PCI functions the device plugin gave a VMI, read from its container environment.

Two real conventions exist and both are honoured:

* KubeVirt's ``PCI_RESOURCE_<NAME>=bdf1,bdf2`` per resource name;
* the Intel QAT device plugin's ``QAT0..QATn=<bdf>``, one per VF, in random order and
  without the resource name, so usable only when a VMI asks for a single resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from handler.core.bdf import Bdf, require_bdf
from handler.core.refusal import Refusal, Refused
from handler.core.vmi import VMI

_QAT_VAR = re.compile(r"^QAT[0-9]+$")


@dataclass(frozen=True, slots=True)
class AssignedDevice:
    name: str
    """The VMI's device entry name; the guest alias is ``ua-qat-<name>``."""
    resource: str
    bdf: Bdf
    source: str = field(compare=False)
    """Where the address came from (an environment variable, or the allocator); informational, so
    a status read back from the API (which does not keep it) still equals the one written."""


def resource_env_var(resource: str) -> str:
    return "PCI_RESOURCE_" + resource.upper().replace("/", "_").replace(".", "_")


def is_device_var(name: str) -> bool:
    return name.startswith("PCI_RESOURCE_") or bool(_QAT_VAR.match(name))


def resolve_devices(vmi: VMI, env: Mapping[str, str]) -> tuple[AssignedDevice, ...]:
    """Pair each device entry of the VMI with a BDF from ``env``, or raise Refused."""
    assigned: list[AssignedDevice] = []
    owner: dict[Bdf, str] = {}
    for resource in vmi.resources():
        entries = [request for request in vmi.devices if request.resource == resource]
        source, bdfs = _addresses_for(resource, vmi, env)
        if len(bdfs) != len(entries):
            raise _refuse(
                source,
                f"holds {len(bdfs)} address(es) but the VMI asks for {len(entries)} {resource} device(s)",
                f"request exactly {len(entries)} {resource} unit(s) for the pod, one per device entry",
            )
        for request, bdf in zip(entries, bdfs, strict=True):
            if bdf in owner:
                raise _refuse(source, f"repeats {bdf}, also given in {owner[bdf]}", "hand each VF out once")
            owner[bdf] = source
            assigned.append(AssignedDevice(request.name, resource, bdf, source))
    return tuple(assigned)


def _addresses_for(resource: str, vmi: VMI, env: Mapping[str, str]) -> tuple[str, list[Bdf]]:
    var = resource_env_var(resource)
    if var in env:
        values = [value.strip() for value in env[var].split(",")]
        return var, _unique_sorted([(var, value) for value in values if value])
    qat_vars = sorted(name for name in env if _QAT_VAR.match(name))
    if not qat_vars:
        raise _refuse(
            var,
            f"is not set and no QAT0..QATn variables exist for {resource}",
            "make sure the pod requests the resource so the device plugin sets it",
        )
    if len(vmi.resources()) > 1:
        raise _refuse(
            ",".join(qat_vars),
            f"cannot be matched to one of {len(vmi.resources())} resources ({', '.join(vmi.resources())})",
            "use PCI_RESOURCE_<NAME> variables, or ask for a single QAT resource",
        )
    return "QAT0..QATn", _unique_sorted([(name, env[name]) for name in qat_vars])


def _unique_sorted(named_values: list[tuple[str, str]]) -> list[Bdf]:
    seen: dict[Bdf, str] = {}
    for name, value in named_values:
        bdf = require_bdf(value, name)
        if bdf in seen:
            raise _refuse(name, f"repeats {bdf}, also given in {seen[bdf]}", "hand each VF out once")
        seen[bdf] = name
    return sorted(seen)


def _refuse(subject: str, problem: str, fix: str) -> Refused:
    return Refused(Refusal("DeviceEnvInvalid", subject, problem, fix))
