"""Device resolution from the environment: a table of env cases, each with either the exact
devices it yields (entry name -> BDF, in order) or the exact refusal it gets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from handler.core.device_env import is_device_var, resolve_devices, resource_env_var
from handler.core.refusal import Refused
from handler.core.vmi import VMI, DeviceRequest

GENERIC = "qat.intel.com/generic"
CY = "qat.intel.com/cy"
GENERIC_VAR = "PCI_RESOURCE_QAT_INTEL_COM_GENERIC"
CY_VAR = "PCI_RESOURCE_QAT_INTEL_COM_CY"

ONE = (("qat0", GENERIC),)
TWO = (("a", GENERIC), ("b", GENERIC))
THREE = (("a", GENERIC), ("b", GENERIC), ("c", GENERIC))
MIXED = (("a", GENERIC), ("b", CY))


def vmi_asking_for(requests: tuple[tuple[str, str], ...]) -> VMI:
    return VMI(
        namespace="default",
        name="vm",
        uid="6a1f0c9e-0001-4d6b-9e51-000000000001",
        generation=1,
        labels=(),
        deletion_requested=False,
        cores=1,
        memory_bytes=2**30,
        devices=tuple(
            DeviceRequest(name, resource, f"spec.domain.devices.qats[{i}]")
            for i, (name, resource) in enumerate(requests)
        ),
        kernel_boot=None,
        disks=(),
        grace_seconds=30,
        spec_digest="0" * 16,
    )


@dataclass(frozen=True)
class Resolves:
    requests: tuple[tuple[str, str], ...]
    env: dict[str, str]
    devices: list[tuple[str, str]]
    """(entry name, BDF) in the VMI's entry order."""
    sources: list[str] = field(default_factory=list)
    """Where each address came from, when the case is about that."""


@dataclass(frozen=True)
class Refuses:
    requests: tuple[tuple[str, str], ...]
    env: dict[str, str]
    subject: str
    problem: str
    """A fragment of Refusal.problem."""
    value: str = ""
    """The bad value, which the one-line message must quote."""


RESOLVES = [
    pytest.param(Resolves(ONE, {"QAT0": "0000:3d:01.1"}, [("qat0", "0000:3d:01.1")], ["QAT0..QATn"]), id="qatn-one"),
    pytest.param(
        Resolves(
            THREE,
            {"QAT2": "0000:3d:01.1", "QAT0": "0000:3d:01.7", "QAT1": "0000:3d:01.3"},
            [("a", "0000:3d:01.1"), ("b", "0000:3d:01.3"), ("c", "0000:3d:01.7")],
        ),
        id="qatn-shuffled-sorted-by-bdf",
    ),
    pytest.param(
        Resolves(
            TWO, {"QAT10": "0000:3d:01.2", "QAT9": "0000:3d:01.1"}, [("a", "0000:3d:01.1"), ("b", "0000:3d:01.2")]
        ),
        id="qatn-two-digit-index",
    ),
    pytest.param(
        Resolves(
            TWO,
            {GENERIC_VAR: "0000:3d:01.1,0000:3d:01.2,"},
            [("a", "0000:3d:01.1"), ("b", "0000:3d:01.2")],
            [GENERIC_VAR, GENERIC_VAR],
        ),
        id="pci-resource-trailing-comma",
    ),
    pytest.param(
        Resolves(TWO, {GENERIC_VAR: " 0000:3d:01.2 , 0000:3d:01.1 "}, [("a", "0000:3d:01.1"), ("b", "0000:3d:01.2")]),
        id="pci-resource-spaces-and-order-sorted",
    ),
    pytest.param(
        Resolves(ONE, {GENERIC_VAR: "0000:3D:0A.1"}, [("qat0", "0000:3d:0a.1")]), id="pci-resource-upper-case-hex"
    ),
    pytest.param(Resolves(ONE, {"QAT0": "3d:01.1"}, [("qat0", "0000:3d:01.1")]), id="qatn-short-bdf"),
    pytest.param(Resolves(ONE, {GENERIC_VAR: "3D:1F.7"}, [("qat0", "0000:3d:1f.7")]), id="pci-short-upper-slot-1f"),
    pytest.param(
        Resolves(TWO, {GENERIC_VAR: "0001:3d:01.1,0000:3e:01.1"}, [("a", "0000:3e:01.1"), ("b", "0001:3d:01.1")]),
        id="pci-domain-sorts-first",
    ),
    pytest.param(
        Resolves(
            MIXED,
            {GENERIC_VAR: "0000:3d:01.4", CY_VAR: "0000:3d:01.2"},
            [("a", "0000:3d:01.4"), ("b", "0000:3d:01.2")],
            [GENERIC_VAR, CY_VAR],
        ),
        id="two-resources-two-vars",
    ),
    pytest.param(
        Resolves(ONE, {GENERIC_VAR: "0000:3d:01.2", "QAT0": "0000:3d:01.5"}, [("qat0", "0000:3d:01.2")], [GENERIC_VAR]),
        id="pci-resource-preferred-over-qatn",
    ),
    pytest.param(
        Resolves(ONE, {"PATH": "/usr/bin", "QAT_MODE": "x", "QAT0": "0000:3d:01.1"}, [("qat0", "0000:3d:01.1")]),
        id="unrelated-vars-ignored",
    ),
    pytest.param(Resolves((), {}, []), id="no-devices-no-env"),
    pytest.param(Resolves((), {"QAT0": "garbage"}, []), id="no-devices-ignores-env"),
    pytest.param(
        Resolves(
            (("x", "intel.com/qat-vf.v2"),),
            {"PCI_RESOURCE_INTEL_COM_QAT-VF_V2": "0000:3d:01.1"},
            [("x", "0000:3d:01.1")],
        ),
        id="resource-with-dash-and-dot",
    ),
]

REFUSES = [
    pytest.param(
        Refuses(TWO, {GENERIC_VAR: "0000:3d:01.1,0000:3d:01.1"}, GENERIC_VAR, "repeats 0000:3d:01.1", "0000:3d:01.1"),
        id="duplicate-within-var",
    ),
    pytest.param(
        Refuses(TWO, {GENERIC_VAR: "3D:01.1,0000:3d:01.1"}, GENERIC_VAR, "repeats 0000:3d:01.1", "0000:3d:01.1"),
        id="duplicate-within-var-after-normalising",
    ),
    pytest.param(
        Refuses(
            TWO, {"QAT0": "0000:3d:01.1", "QAT1": "0000:3D:01.1"}, "QAT1", "repeats 0000:3d:01.1, also given in QAT0"
        ),
        id="duplicate-across-qatn",
    ),
    pytest.param(
        Refuses(
            MIXED,
            {GENERIC_VAR: "0000:3d:01.1", CY_VAR: "0000:3d:01.1"},
            CY_VAR,
            f"repeats 0000:3d:01.1, also given in {GENERIC_VAR}",
            "0000:3d:01.1",
        ),
        id="duplicate-across-vars",
    ),
    pytest.param(
        Refuses(TWO, {GENERIC_VAR: "0000:3d:01.1"}, GENERIC_VAR, "holds 1 address(es) but the VMI asks for 2"),
        id="too-few",
    ),
    pytest.param(
        Refuses(
            ONE, {GENERIC_VAR: "0000:3d:01.1,0000:3d:01.2"}, GENERIC_VAR, "holds 2 address(es) but the VMI asks for 1"
        ),
        id="too-many",
    ),
    pytest.param(
        Refuses(ONE, {"QAT0": "0000:3d:01.1", "QAT1": "0000:3d:01.2"}, "QAT0..QATn", "holds 2 address(es)"),
        id="too-many-qatn",
    ),
    pytest.param(Refuses(ONE, {GENERIC_VAR: ""}, GENERIC_VAR, "holds 0 address(es)"), id="empty-pci-resource"),
    pytest.param(Refuses(ONE, {GENERIC_VAR: ","}, GENERIC_VAR, "holds 0 address(es)"), id="only-a-comma"),
    pytest.param(
        Refuses(ONE, {GENERIC_VAR: "zz:01.1"}, GENERIC_VAR, "'zz:01.1' is not a PCI address", "zz:01.1"),
        id="garbage-hex",
    ),
    pytest.param(
        Refuses(TWO, {GENERIC_VAR: "0000:3d:01.1,bogus"}, GENERIC_VAR, "'bogus' is not a PCI address", "bogus"),
        id="garbage-second-of-list",
    ),
    pytest.param(
        Refuses(ONE, {"QAT0": "0000:3d:20.0"}, "QAT0", "'0000:3d:20.0' is not a PCI address", "0000:3d:20.0"),
        id="slot-above-1f",
    ),
    pytest.param(
        Refuses(ONE, {"QAT0": "0000:3d:01.8"}, "QAT0", "'0000:3d:01.8' is not a PCI address", "0000:3d:01.8"),
        id="function-above-7",
    ),
    pytest.param(Refuses(ONE, {"QAT0": ""}, "QAT0", "'' is not a PCI address", "''"), id="empty-qatn"),
    pytest.param(
        Refuses(ONE, {"QAT0": "00000:3d:01.1"}, "QAT0", "is not a PCI address", "00000:3d:01.1"), id="long-domain"
    ),
    pytest.param(Refuses(ONE, {"QAT0": "0000:3d:01"}, "QAT0", "is not a PCI address", "0000:3d:01"), id="no-function"),
    pytest.param(
        Refuses(
            ONE, {"QAT0": "0000:3d:01.1,0000:3d:01.2"}, "QAT0", "is not a PCI address", "0000:3d:01.1,0000:3d:01.2"
        ),
        id="qatn-holds-a-list",
    ),
    pytest.param(
        Refuses(MIXED, {"QAT0": "0000:3d:01.1", "QAT1": "0000:3d:01.2"}, "QAT0,QAT1", "cannot be matched to one of 2"),
        id="qatn-with-two-resources-is-ambiguous",
    ),
    pytest.param(
        Refuses(MIXED, {GENERIC_VAR: "0000:3d:01.1", "QAT0": "0000:3d:01.2"}, "QAT0", "cannot be matched"),
        id="qatn-cannot-fill-the-second-resource",
    ),
    pytest.param(Refuses(ONE, {}, GENERIC_VAR, "is not set and no QAT0..QATn variables exist"), id="missing-vars"),
    pytest.param(Refuses(ONE, {"QATX": "0000:3d:01.1"}, GENERIC_VAR, "is not set"), id="qat-without-index-is-no-var"),
    pytest.param(Refuses(MIXED, {GENERIC_VAR: "0000:3d:01.1"}, CY_VAR, "is not set"), id="missing-second-resource-var"),
]


@pytest.mark.parametrize("case", RESOLVES)
def test_env_resolves_to_devices(case: Resolves) -> None:
    devices = resolve_devices(vmi_asking_for(case.requests), case.env)
    assert [(d.name, str(d.bdf)) for d in devices] == case.devices
    assert [d.resource for d in devices] == [resource for _, resource in case.requests]
    if case.sources:
        assert [d.source for d in devices] == case.sources


@pytest.mark.parametrize("case", REFUSES)
def test_env_is_refused(case: Refuses) -> None:
    with pytest.raises(Refused) as caught:
        resolve_devices(vmi_asking_for(case.requests), case.env)
    refusal = caught.value.refusal
    assert refusal.reason == "DeviceEnvInvalid"
    assert refusal.subject == case.subject
    assert case.problem in refusal.problem
    line = refusal.line()
    assert "\n" not in line
    assert line.startswith(f"{case.subject} ")
    assert case.value in line
    assert "; fix: " in line
    assert str(caught.value) == line


@pytest.mark.parametrize(
    ("resource", "var"),
    [
        ("qat.intel.com/generic", "PCI_RESOURCE_QAT_INTEL_COM_GENERIC"),
        ("qat.intel.com/cy", "PCI_RESOURCE_QAT_INTEL_COM_CY"),
        ("intel.com/qat_dc", "PCI_RESOURCE_INTEL_COM_QAT_DC"),
        ("my-vendor.example.org/qat-vf.v2", "PCI_RESOURCE_MY-VENDOR_EXAMPLE_ORG_QAT-VF_V2"),
    ],
)
def test_resource_name_to_env_var_follows_kubevirt(resource: str, var: str) -> None:
    """KubeVirt upper-cases and replaces '/' and '.' with '_'; dashes stay as they are."""
    assert resource_env_var(resource) == var
    assert is_device_var(var)


@pytest.mark.parametrize(
    ("name", "device"),
    [("QAT0", True), ("QAT17", True), ("PCI_RESOURCE_X", True), ("QAT", False), ("QATX", False), ("PATH", False)],
)
def test_is_device_var(name: str, device: bool) -> None:
    assert is_device_var(name) is device
