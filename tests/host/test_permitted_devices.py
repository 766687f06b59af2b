"""The operator's permitted-devices list, in KubeVirt's shape, extending or replacing the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.core.bdf import Bdf
from handler.core.permitted_devices import PermitMode, parse_permitted_devices
from handler.core.refusal import Refused
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inspector import HostInspector
from handler.host.simulated_host import SimulatedDevice
from tests.host.trees import build, c62x, gen4

EDU = SimulatedDevice(Bdf(0, 0, 3, 0), 0x11E8, 0x00FF00, "vfio-pci", vendor=0x1234)
OPERATOR = {
    "pciHostDevices": [
        {"pciVendorSelector": "1234:11E8", "resourceName": "example.com/edu", "externalResourceProvider": True},
        {"pciVendorSelector": "8086:37c9", "resourceName": "qat.intel.com/generic"},
    ]
}


def test_the_kubevirt_shape_is_read() -> None:
    permitted = parse_permitted_devices(OPERATOR, PermitMode.REPLACE)
    assert [(e.selector, e.resource_name, e.external_resource_provider) for e in permitted.operator] == [
        ("1234:11e8", "example.com/edu", True),
        ("8086:37c9", "qat.intel.com/generic", False),
    ]
    assert permitted.mode is PermitMode.REPLACE
    assert parse_permitted_devices(None).operator == ()
    assert parse_permitted_devices({}).operator == ()


@pytest.mark.parametrize(
    ("doc", "subject"),
    [
        ([], "permittedHostDevices"),
        ({"pciHostDevices": {}}, "permittedHostDevices.pciHostDevices"),
        ({"pciHostDevices": ["8086:37c9"]}, "permittedHostDevices.pciHostDevices[0]"),
        (
            {"pciHostDevices": [{"pciVendorSelector": "8086", "resourceName": "a/b"}]},
            "permittedHostDevices.pciHostDevices[0].pciVendorSelector",
        ),
        (
            {"pciHostDevices": [{"pciVendorSelector": "8086:37c9", "resourceName": "generic"}]},
            "permittedHostDevices.pciHostDevices[0].resourceName",
        ),
        (
            {
                "pciHostDevices": [
                    {"pciVendorSelector": "8086:37c9", "resourceName": "a/b", "externalResourceProvider": "yes"}
                ]
            },
            "permittedHostDevices.pciHostDevices[0].externalResourceProvider",
        ),
    ],
)
def test_a_bad_list_is_refused_naming_the_field(doc: object, subject: str) -> None:
    with pytest.raises(Refused) as refused:
        parse_permitted_devices(doc)
    assert refused.value.refusal.reason == "InvalidPermittedDevices"
    assert refused.value.refusal.subject == subject


def test_extend_adds_the_operator_devices_to_the_qat_table(tmp_path: Path) -> None:
    c62x_vf, gen4_vf = build(tmp_path, c62x(vfs=1), gen4(vfs=1), extra_devices=(EDU,))
    inspector = HostInspector(FreshDeviceChecks(tmp_path, parse_permitted_devices(OPERATOR, PermitMode.EXTEND)))
    assert inspector.check(EDU.bdf, "example.com/edu") is None
    assert inspector.check(gen4_vf, "qat.intel.com/dc") is None
    assert inspector.check(c62x_vf, "qat.intel.com/cy") is None
    assert inspector.usable_vfs() == (EDU.bdf, c62x_vf, gen4_vf)
    assert inspector.usable_vfs("example.com/edu") == (EDU.bdf,)


def test_a_resource_name_only_matches_its_own_selector(tmp_path: Path) -> None:
    gen4_vf = build(tmp_path, gen4(vfs=1), extra_devices=(EDU,))[0]
    inspector = HostInspector(FreshDeviceChecks(tmp_path, parse_permitted_devices(OPERATOR, PermitMode.EXTEND)))
    smuggled = inspector.check(gen4_vf, "example.com/edu")
    assert smuggled is not None
    assert smuggled.problem == (
        "is 8086:4941, permitted for qat.intel.com/* but not for example.com/edu (rule permitted)"
    )
    edu = inspector.check(EDU.bdf, "qat.intel.com/generic")
    assert edu is not None and edu.problem.startswith("is 1234:11e8, permitted for example.com/edu but not")


def test_replace_drops_the_builtin_table(tmp_path: Path) -> None:
    c62x_vf, gen4_vf = build(tmp_path, c62x(vfs=1), gen4(vfs=1), extra_devices=(EDU,))
    inspector = HostInspector(FreshDeviceChecks(tmp_path, parse_permitted_devices(OPERATOR, PermitMode.REPLACE)))
    assert inspector.check(c62x_vf, "qat.intel.com/generic") is None
    narrowed = inspector.check(c62x_vf, "qat.intel.com/cy")
    assert narrowed is not None
    assert narrowed.problem == (
        "is 8086:37c9, permitted for qat.intel.com/generic but not for qat.intel.com/cy (rule permitted)"
    )
    dropped = inspector.check(gen4_vf, "qat.intel.com/generic")
    assert dropped is not None
    assert dropped.problem == "is 8086:4941, which is not in the permitted-devices list (rule permitted)"
    assert inspector.usable_vfs() == (EDU.bdf, c62x_vf)
