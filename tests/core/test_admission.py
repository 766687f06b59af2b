"""The admission decision and its AdmissionReview wire format, without a server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from handler.core.admission import AdmissionPolicy, Cause, VmiRequest, decide
from handler.core.admission_review import BadReview, read_review, review_response
from handler.core.feature_gates import GATE_OFF_MESSAGE
from handler.core.permitted_devices import PermitMode, PermittedDevice, PermittedDevices
from handler.core.refusal import Refused
from handler.core.vmi_parse import parse_vmi

UID = "0b7f3c1e-5a2d-4c6b-9e51-6f0d2a9c8e47"
CONTROLLER = "system:serviceaccount:qat-handler:qat-handler-controller"
GATE_ON = AdmissionPolicy(gates=frozenset({"QAT"}), exempt_users=frozenset({CONTROLLER}))
GATE_OFF = AdmissionPolicy(exempt_users=frozenset({CONTROLLER}))


def vmi(**devices: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "uid": UID},
        "spec": {"domain": {"memory": {"guest": "1Gi"}, "devices": devices}},
    }


QAT = [{"name": "qat0", "deviceName": "qat.intel.com/generic"}]


def create(obj: Any, policy: AdmissionPolicy = GATE_ON) -> tuple[Cause, ...]:
    return decide(VmiRequest("CREATE", "ns", UID, "alice", obj), policy).causes


def test_qats_with_the_gate_off_are_refused_with_the_seeds_message() -> None:
    assert create(vmi(qats=QAT), GATE_OFF) == (Cause("spec.domain.devices.qats", GATE_OFF_MESSAGE),)
    assert GATE_OFF_MESSAGE == "QAT feature gate is not enabled in kubevirt-config"
    assert create(vmi(qats=QAT), GATE_ON) == ()


def test_host_devices_are_not_gated_as_on_the_node() -> None:
    assert create(vmi(hostDevices=QAT), GATE_OFF) == ()


EDITS: list[Any] = [
    pytest.param(["spec", "running"], True, id="unknown-field"),
    pytest.param(["spec", "domain", "devices", "qats"], [{"name": "q", "deviceName": "not a resource"}], id="device"),
    pytest.param(["spec", "domain", "devices", "qats"], [QAT[0], QAT[0]], id="duplicate-name"),
    pytest.param(["spec", "domain", "memory"], {}, id="memory-missing"),
    pytest.param(["spec", "domain", "cpu"], {"cores": 0}, id="out-of-range"),
    pytest.param(["spec", "domain", "cpu"], {"sockets": 2}, id="unsupported-value"),
    pytest.param(["spec", "domain", "machine"], {"type": "pc-i440fx"}, id="machine"),
    pytest.param(["spec", "domain", "devices", "disks"], [{"name": "root"}], id="disk-without-volume"),
    pytest.param(["metadata", "name"], "Bad_Name", id="metadata"),
    pytest.param(["kind"], "VirtualMachine", id="kind"),
]


@pytest.mark.parametrize(("path", "value"), EDITS)
def test_every_parser_refusal_is_one_cause_with_the_nodes_line(path: list[str], value: Any) -> None:
    obj = vmi()
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    with pytest.raises(Refused) as node_says:
        parse_vmi({**obj, "metadata": {**obj["metadata"], "namespace": "ns"}})
    refusal = node_says.value.refusal
    assert create(obj) == (Cause(refusal.subject, refusal.line()),)


def test_a_resource_no_permitted_device_serves_is_refused() -> None:
    causes = create(vmi(hostDevices=[{"name": "gpu", "deviceName": "nvidia.com/gpu"}]))
    assert [c.field for c in causes] == ["spec.domain.devices.hostDevices[0].deviceName"]
    assert "'nvidia.com/gpu', which no permitted device serves" in causes[0].message
    assert "fix: " in causes[0].message
    operator = PermittedDevices((PermittedDevice(0x10DE, 0x1DB4, "nvidia.com/gpu"),), PermitMode.EXTEND)
    allowed = AdmissionPolicy(gates=frozenset({"QAT"}), permitted=operator)
    assert create(vmi(hostDevices=[{"name": "gpu", "deviceName": "nvidia.com/gpu"}]), allowed) == ()
    replaced = AdmissionPolicy(
        gates=frozenset({"QAT"}), permitted=PermittedDevices(operator.operator, PermitMode.REPLACE)
    )
    assert [c.field for c in create(vmi(qats=QAT), replaced)] == ["spec.domain.devices.qats[0].deviceName"]


def test_gate_and_permitted_causes_come_together() -> None:
    causes = create(vmi(qats=[{"name": "q", "deviceName": "example.com/nic"}]), GATE_OFF)
    assert [c.field for c in causes] == ["spec.domain.devices.qats", "spec.domain.devices.qats[0].deviceName"]


def test_the_pod_network_is_refused_as_every_node_would_and_multus_is_left_to_the_node() -> None:
    """No node in Kubernetes can give a guest the pod network: admitting such a VMI would only
    make a launcher pod hold a VF for a guest that never starts."""
    obj = vmi()
    obj["spec"]["networks"] = [{"name": "default", "pod": {}}, {"name": "storage", "multus": {"networkName": "br"}}]
    obj["spec"]["domain"]["devices"]["interfaces"] = [
        {"name": "default", "masquerade": {}},
        {"name": "storage", "bridge": {}},
    ]
    (cause,) = create(obj)
    assert cause.field == "spec.networks[0].pod"
    assert cause.message.startswith("spec.networks[0].pod cannot be given in Kubernetes")
    assert "fix: use a multus network" in cause.message
    del obj["spec"]["networks"][0], obj["spec"]["domain"]["devices"]["interfaces"][0]
    assert create(obj) == ()  # whether NetworkAttachmentDefinition br exists is the node's to judge


def update(old: Any, new: Any, user: str, policy: AdmissionPolicy = GATE_OFF) -> tuple[Cause, ...]:
    return decide(VmiRequest("UPDATE", "ns", UID, user, new, old), policy).causes


def test_the_spec_is_immutable_except_for_the_stacks_accounts() -> None:
    old = vmi(qats=QAT)
    new = copy.deepcopy(old)
    new["spec"]["domain"]["cpu"] = {"cores": 4}
    (cause,) = update(old, new, "alice")
    assert cause.field == "spec" and "cannot be changed after it is created" in cause.message
    assert "fix: delete the VMI and create it again" in cause.message
    assert update(old, new, CONTROLLER, GATE_OFF) == (), "the gate is judged at creation"
    broken = copy.deepcopy(old)
    broken["spec"]["domain"]["cpu"] = {"cores": 0}
    assert [c.field for c in update(old, broken, CONTROLLER, GATE_ON)] == ["spec.domain.cpu.cores"]


def test_status_labels_and_finalizers_stay_writable_while_the_gate_is_off() -> None:
    old = vmi(qats=QAT)
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running"}
    new["metadata"]["finalizers"] = ["qat-handler/domain-cleanup"]
    new["metadata"]["labels"] = {"kubevirt.io/nodeName": "node01"}
    assert update(old, new, "system:serviceaccount:qat-handler:qat-handler") == ()


def test_delete_and_connect_are_not_judged() -> None:
    assert decide(VmiRequest("DELETE", "ns", UID, "alice", None, vmi()), GATE_OFF).allowed


def review(**request: Any) -> dict[str, Any]:
    body = {"uid": "r-1", "operation": "CREATE", "namespace": "ns", "userInfo": {"username": "alice"}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {**body, **request}}


def test_a_denial_on_the_wire_is_a_422_status_with_causes() -> None:
    uid, request = read_review(review(object=vmi(qats=QAT), name="vm"))
    answer = review_response(uid, decide(request, GATE_OFF), request.name)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"] == {
        "uid": "r-1",
        "allowed": False,
        "status": {
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": GATE_OFF_MESSAGE,
            "details": {
                "name": "vm",
                "group": "kubevirt.io",
                "kind": "VirtualMachineInstance",
                "causes": [
                    {"type": "FieldValueInvalid", "field": "spec.domain.devices.qats", "message": GATE_OFF_MESSAGE}
                ],
            },
        },
    }
    assert review_response(uid, decide(request, GATE_ON))["response"] == {"uid": "r-1", "allowed": True}


def test_the_requests_namespace_and_uid_stand_in_for_missing_ones() -> None:
    obj = vmi()
    del obj["metadata"]["uid"]
    _, request = read_review(review(object=obj, uid="6a1f0c9e-0001-4d6b-9e51-000000000001"))
    assert decide(request, GATE_ON).allowed


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "not an AdmissionReview"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}, "only admission.k8s.io/v1"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}, "request.uid"),
    ],
)
def test_a_body_that_is_not_a_review_is_named(body: Any, problem: str) -> None:
    with pytest.raises(BadReview, match=problem):
        read_review(body)
