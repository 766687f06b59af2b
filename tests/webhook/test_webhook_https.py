"""``qat-handler webhook`` over real HTTPS with real AdmissionReview bodies, against the fake API
server: the certificate from the Secret the TLS keeper made, the gate from kubevirt-config."""

from __future__ import annotations

import copy
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from handler.core.feature_gates import GATE_OFF_MESSAGE
from handler.core.refusal import Refused
from handler.core.vmi_parse import parse_vmi
from tests.support.fakekube import FakeApiServer
from tests.webhook.support import Webhook, issue_certificates, wait_until, webhook_process

VMI_UID = "0b7f3c1e-5a2d-4c6b-9e51-6f0d2a9c8e47"
CONTROLLER = "system:serviceaccount:qat-handler:qat-handler-controller"


PERMITTED = "pciHostDevices:\n  - {pciVendorSelector: '10de:1db4', resourceName: nvidia.com/gpu}\n"


@pytest.fixture(scope="module")
def permitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("permitted") / "permitted.yaml"
    path.write_text(PERMITTED)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, permitted: Path) -> Iterator[tuple[FakeApiServer, Webhook, bytes]]:
    tmp = tmp_path_factory.mktemp("webhook")
    with FakeApiServer(bookmark_interval=0.2) as server:
        ca = issue_certificates(server)
        with webhook_process(server, tmp, "--permitted-devices", str(permitted)) as webhook:
            wait_until(lambda: webhook.ready(ca), "the webhook becoming ready")
            yield server, webhook, ca
        assert not server.internal_errors


def vmi(**devices: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "default", "uid": VMI_UID},
        "spec": {"domain": {"memory": {"guest": "1Gi"}, "devices": devices}},
    }


def request(obj: Any, operation: str = "CREATE", old: Any = None, user: str = "alice") -> dict[str, Any]:
    return {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachineInstance"},
        "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachineinstances"},
        "name": "vm",
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }


QAT = [{"name": "qat0", "deviceName": "qat.intel.com/generic"}]


def set_gates(server: FakeApiServer, gates: str | None) -> None:
    core = client.CoreV1Api(server.api_client())
    if gates is None:
        core.delete_namespaced_config_map("kubevirt-config", "kubevirt")
        return
    body = {"metadata": {"name": "kubevirt-config"}, "data": {"feature-gates": gates}}
    if server.get_object("configmaps", "kubevirt", "kubevirt-config") is None:
        core.create_namespaced_config_map("kubevirt", body)
    else:
        core.patch_namespaced_config_map("kubevirt-config", "kubevirt", body)


def test_gate_off_denies_qats_then_turning_it_on_admits_without_a_restart(
    stack: tuple[FakeApiServer, Webhook, bytes],
) -> None:
    server, webhook, ca = stack
    denied = webhook.review(ca, request(vmi(qats=QAT)))
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 422 and denied["status"]["reason"] == "Invalid"
    assert denied["status"]["message"] == GATE_OFF_MESSAGE == "QAT feature gate is not enabled in kubevirt-config"
    assert denied["status"]["details"]["causes"] == [
        {"type": "FieldValueInvalid", "field": "spec.domain.devices.qats", "message": GATE_OFF_MESSAGE}
    ]
    set_gates(server, "LiveMigration,QAT")
    wait_until(lambda: webhook.review(ca, request(vmi(qats=QAT)))["allowed"], "the QAT gate taking effect")
    set_gates(server, "LiveMigration")
    wait_until(lambda: not webhook.review(ca, request(vmi(qats=QAT)))["allowed"], "the QAT gate going off again")
    set_gates(server, None)


def test_host_devices_are_not_gated(stack: tuple[FakeApiServer, Webhook, bytes]) -> None:
    _, webhook, ca = stack
    assert webhook.review(ca, request(vmi(hostDevices=QAT)))["allowed"] is True


REFUSALS: list[Any] = [
    pytest.param(("spec", "running"), True, id="unknown-field"),
    pytest.param(("spec", "domain", "devices", "hostDevices"), [{"name": "q", "deviceName": "bad"}], id="device-name"),
    pytest.param(("spec", "domain", "devices", "hostDevices"), [QAT[0], QAT[0]], id="duplicate-device"),
    pytest.param(("spec", "domain", "memory"), {}, id="missing-memory"),
    pytest.param(("spec", "domain", "cpu"), {"cores": 1000}, id="out-of-range"),
    pytest.param(("spec", "domain", "cpu"), {"cores": "two"}, id="wrong-type"),
    pytest.param(("spec", "domain", "cpu"), {"sockets": 2}, id="unsupported-value"),
    pytest.param(("spec", "domain", "devices", "autoattachPodInterface"), True, id="networking"),
    pytest.param(("spec", "domain", "devices", "disks"), [{"name": "root"}], id="disk-without-volume"),
    pytest.param(("spec", "domain", "firmware"), {"kernelBoot": {"container": {"kernelPath": "vmlinuz"}}}, id="path"),
    pytest.param(("spec", "terminationGracePeriodSeconds"), -1, id="grace"),
    pytest.param(("metadata", "name"), "Not_A_Name", id="metadata"),
    pytest.param(("apiVersion",), "kubevirt.io/v1beta1", id="api-version"),
]


@pytest.mark.parametrize(("path", "value"), REFUSALS)
def test_each_parser_refusal_is_a_cause_with_the_nodes_message(
    stack: tuple[FakeApiServer, Webhook, bytes], path: tuple[str, ...], value: Any
) -> None:
    _, webhook, ca = stack
    obj = vmi()
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    with pytest.raises(Refused) as on_the_node:
        parse_vmi(obj)
    refusal = on_the_node.value.refusal
    answer = webhook.review(ca, request(obj))
    assert answer["allowed"] is False
    assert answer["status"]["details"]["causes"] == [
        {"type": "FieldValueInvalid", "field": refusal.subject, "message": refusal.line()}
    ]
    assert answer["status"]["message"] == refusal.line()


def test_permitted_devices_come_from_the_same_file_the_agent_takes(stack: tuple[FakeApiServer, Webhook, bytes]) -> None:
    _, webhook, ca = stack
    gpu = [{"name": "gpu", "deviceName": "nvidia.com/gpu"}]
    assert webhook.review(ca, request(vmi(hostDevices=gpu)))["allowed"] is True
    nic = [{"name": "nic", "deviceName": "example.com/nic"}]
    answer = webhook.review(ca, request(vmi(hostDevices=nic)))
    (cause,) = answer["status"]["details"]["causes"]
    assert cause["field"] == "spec.domain.devices.hostDevices[0].deviceName"
    assert "which no permitted device serves" in cause["message"]


def test_sighup_re_reads_the_permitted_devices(stack: tuple[FakeApiServer, Webhook, bytes], permitted: Path) -> None:
    _, webhook, ca = stack
    gpu = request(vmi(hostDevices=[{"name": "gpu", "deviceName": "nvidia.com/gpu"}]))
    assert webhook.review(ca, gpu)["allowed"] is True
    permitted.write_text("pciHostDevices: []\n")
    webhook.process.send_signal(signal.SIGHUP)
    wait_until(lambda: not webhook.review(ca, gpu)["allowed"], "the emptied list taking effect")
    permitted.write_text("pciHostDevices: [oops\n")
    webhook.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the previous list" in webhook.log.read_text(), "the unreadable file reported")
    assert not webhook.review(ca, gpu)["allowed"], "a broken file keeps the previous list"
    permitted.write_text(PERMITTED)
    webhook.process.send_signal(signal.SIGHUP)
    wait_until(lambda: webhook.review(ca, gpu)["allowed"], "the restored list taking effect")


def test_health_endpoints_answer_on_the_https_port(stack: tuple[FakeApiServer, Webhook, bytes]) -> None:
    _, webhook, ca = stack
    for path in ("/healthz", "/readyz"):
        connection = webhook.connect(ca)
        connection.request("GET", path)
        assert connection.getresponse().status == 200
        connection.close()


def test_the_spec_is_immutable_except_for_the_stacks_service_accounts(
    stack: tuple[FakeApiServer, Webhook, bytes],
) -> None:
    _, webhook, ca = stack
    old = vmi(qats=QAT)
    changed = copy.deepcopy(old)
    changed["spec"]["domain"]["memory"]["guest"] = "2Gi"
    refused = webhook.review(ca, request(changed, "UPDATE", old))
    assert refused["allowed"] is False
    assert refused["status"]["details"]["causes"][0]["field"] == "spec"
    assert "cannot be changed after it is created (update by alice)" in refused["status"]["message"]
    assert webhook.review(ca, request(changed, "UPDATE", old, CONTROLLER))["allowed"] is True
    status_only = copy.deepcopy(old)
    status_only["status"] = {"phase": "Running"}
    status_only["metadata"]["finalizers"] = ["qat-handler/domain-cleanup"]
    agent = "system:serviceaccount:qat-handler:qat-handler"
    assert webhook.review(ca, request(status_only, "UPDATE", old, agent))["allowed"] is True, "gate off, yet allowed"


def test_a_body_that_is_not_a_review_gets_400(stack: tuple[FakeApiServer, Webhook, bytes]) -> None:
    _, webhook, ca = stack
    assert webhook.post(ca, b"{not json")[0] == 400
    status, text = webhook.post(ca, {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"})
    assert status == 400 and "only admission.k8s.io/v1" in text


def test_a_denial_is_logged_as_one_structured_line(stack: tuple[FakeApiServer, Webhook, bytes]) -> None:
    _, webhook, ca = stack
    webhook.review(ca, request(vmi(hostDevices=[{"name": "q", "deviceName": "bad-name"}])))

    def lines() -> list[str]:
        return [li for li in webhook.log.read_text().splitlines() if "'bad-name' is not a resource name" in li]

    wait_until(lambda: bool(lines()), "the denial's log line")
    (line,) = lines()
    assert '"event": "VMI refused"' in line and '"vmi": "default/vm"' in line and '"operation": "CREATE"' in line
