"""status.interfaces survives both stores: the bare-metal status file and the VMI object."""

from __future__ import annotations

from handler.baremetal.status_json import status_from_json, status_to_json
from handler.core.interface_status import InterfaceStatus, interfaces_from_json
from handler.core.kube_status import status_body, status_from_object
from handler.core.status import Phase, VMIStatus, ready

STATUS = VMIStatus(
    Phase.RUNNING,
    "ns_vm",
    (ready(True),),
    interfaces=(
        InterfaceStatus("default", "02:00:00:00:00:01", ("192.168.122.7", "fd00::7")),
        InterfaceStatus("storage", "02:00:00:00:00:02"),
    ),
)


def test_status_file_round_trip_keeps_interfaces() -> None:
    data = status_to_json(STATUS, {})
    assert data["interfaces"][0] == {
        "name": "default",
        "mac": "02:00:00:00:00:01",
        "ipAddress": "192.168.122.7",
        "ipAddresses": ["192.168.122.7", "fd00::7"],
    }
    assert status_from_json(data) == STATUS


def test_vmi_object_round_trip_keeps_interfaces_in_kubevirts_shape() -> None:
    body = status_body(STATUS, "node01", "2026-01-01T00:00:00Z", None)
    assert [i["ipAddress"] for i in body["interfaces"]] == ["192.168.122.7", ""]
    obj = {"metadata": {"name": "vm", "namespace": "ns"}, "status": body}
    assert status_from_object(obj) == STATUS
    no_nics = status_body(VMIStatus(Phase.RUNNING, "ns_vm"), "node01", "now", None)
    assert no_nics["interfaces"] is None, "a merge patch with null removes interfaces the guest no longer has"


def test_foreign_or_malformed_interface_entries_are_skipped() -> None:
    assert interfaces_from_json([{"mac": "x"}, "eth0", {"name": "a", "ipAddresses": None}]) == (
        InterfaceStatus("a", ""),
    )
    assert interfaces_from_json(None) == ()
