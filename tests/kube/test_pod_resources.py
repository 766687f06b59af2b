"""Kubelet's pod-resources API: the wire codec, the client against a fake kubelet, and the kubelet rule."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from handler.core.allocation_check import check_allocation
from handler.kube import protowire
from handler.kube.pod_resources import (
    Allocations,
    ContainerDevices,
    ContainerResources,
    PodResources,
    PodResourcesClient,
    PodResourcesUnavailable,
    decode_list_response,
    encode_list_response,
)
from handler.kube.protowire import WireError
from tests.support.fake_kubelet import FakeKubelet, launcher_pod

CY, DC = "qat.intel.com/cy", "qat.intel.com/dc"

PODS = (
    PodResources(
        "default",
        "virt-launcher-a",
        (
            ContainerResources("compute", (ContainerDevices(CY, ("0000:3d:01.1", "0000:3d:01.2")),)),
            ContainerResources(
                "sidecar", (ContainerDevices(DC, ("0000:3f:02.0",)), ContainerDevices(CY, ("0000:3d:01.3",)))
            ),
        ),
    ),
    PodResources(
        "prod", "virt-launcher-b", (ContainerResources("compute", (ContainerDevices(DC, ("0000:3f:02.1",)),)),)
    ),
    PodResources("prod", "no-devices", (ContainerResources("app"),)),
    PodResources("kube-system", "no-containers"),
)


# --- the wire codec -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (-1, "ff" * 9 + "01")],
)
def test_varints(value: int, encoded: str) -> None:
    assert protowire.encode_varint(value).hex() == encoded
    decoded, end = protowire.read_varint(bytes.fromhex(encoded), 0)
    assert (decoded, end) == (value % (1 << 64), len(encoded) // 2)


def test_response_round_trips_through_our_encoder() -> None:
    assert decode_list_response(encode_list_response(PODS)) == PODS
    assert decode_list_response(b"") == ()


def test_decode_by_hand_skips_unknown_fields_of_every_wire_type() -> None:
    w = protowire
    topology = w.len_field(1, w.varint_field(1, 1))  # TopologyInfo{nodes: [NUMANode{ID: 1}]}
    devices = w.string_field(1, CY) + w.string_field(2, "0000:3d:01.1") + w.len_field(3, topology)
    memory = w.string_field(1, "hugepages-1Gi") + w.varint_field(2, 1 << 30) + w.len_field(3, topology)
    container = (
        w.string_field(1, "compute")
        + w.len_field(2, devices)
        + w.len_field(3, b"".join(w.encode_varint(cpu) for cpu in (2, 3, 130)))  # packed cpu_ids
        + w.len_field(4, memory)
        + w.len_field(5, w.string_field(2, "claim") + w.len_field(4, w.len_field(1, w.string_field(1, "v.com/x=1"))))
    )
    group = w.tag(12, w.START_GROUP) + w.varint_field(1, 5) + w.tag(13, w.START_GROUP) + w.tag(13, w.END_GROUP)
    unknown = (
        w.varint_field(9, 7)
        + w.tag(10, w.I64)
        + bytes(8)
        + w.tag(11, w.I32)
        + bytes(4)
        + group
        + w.tag(12, w.END_GROUP)
        + w.len_field(14, b"\x01\x02")
    )
    pod = w.string_field(1, "virt-launcher-a") + unknown + w.string_field(2, "default") + w.len_field(3, container)
    data = w.varint_field(2, 1) + w.len_field(1, pod) + unknown
    expected = PodResources(
        "default", "virt-launcher-a", (ContainerResources("compute", (ContainerDevices(CY, ("0000:3d:01.1",)),)),)
    )
    assert decode_list_response(data) == (expected,)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (bytes.fromhex("0a05") + b"abc", "needs 5 bytes"),
        (bytes.fromhex("0a"), "truncated"),
        (bytes.fromhex("08") + b"\xff" * 11, "longer than 10 bytes"),
        (bytes.fromhex("0801"), "wire type 0, expected 2"),  # pod_resources sent as a varint
        (bytes.fromhex("0f"), "not a protobuf wire type"),
        (bytes.fromhex("63"), "not closed"),  # group 12 opened, never closed
        (bytes.fromhex("64"), "without its start"),
        (bytes.fromhex("0002"), "out of range"),  # field number 0
        (protowire.len_field(1, protowire.len_field(1, b"\xff")), "not valid UTF-8"),
    ],
)
def test_malformed_bytes_are_refused(data: bytes, complaint: str) -> None:
    with pytest.raises(WireError, match=complaint):
        decode_list_response(data)


def _real_response_class() -> Any:
    """kubelet's v1 messages built with the protobuf library from the .proto's field numbers."""
    F = descriptor_pb2.FieldDescriptorProto
    repeated, string, int64, message = F.LABEL_REPEATED, F.TYPE_STRING, F.TYPE_INT64, F.TYPE_MESSAGE
    file = descriptor_pb2.FileDescriptorProto(name="podresources_test.proto", package="v1test", syntax="proto3")
    shapes: dict[str, list[tuple[str, int, int, int, str]]] = {
        "ListPodResourcesResponse": [("pod_resources", 1, message, repeated, "PodResources")],
        "PodResources": [
            ("name", 1, string, 0, ""),
            ("namespace", 2, string, 0, ""),
            ("containers", 3, message, repeated, "ContainerResources"),
        ],
        "ContainerResources": [
            ("name", 1, string, 0, ""),
            ("devices", 2, message, repeated, "ContainerDevices"),
            ("cpu_ids", 3, int64, repeated, ""),
            ("memory", 4, message, repeated, "ContainerMemory"),
            ("dynamic_resources", 5, message, repeated, "DynamicResource"),
        ],
        "ContainerMemory": [
            ("memory_type", 1, string, 0, ""),
            ("size", 2, F.TYPE_UINT64, 0, ""),
            ("topology", 3, message, 0, "TopologyInfo"),
        ],
        "ContainerDevices": [
            ("resource_name", 1, string, 0, ""),
            ("device_ids", 2, string, repeated, ""),
            ("topology", 3, message, 0, "TopologyInfo"),
        ],
        "TopologyInfo": [("nodes", 1, message, repeated, "NUMANode")],
        "NUMANode": [("ID", 1, int64, 0, "")],
        "DynamicResource": [("claim_name", 2, string, 0, ""), ("claim_namespace", 3, string, 0, "")],
    }
    for name, fields in shapes.items():
        message_type = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            message_type.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=label or F.LABEL_OPTIONAL,
                type_name=f".v1test.{type_name}" if type_name else None,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("v1test.ListPodResourcesResponse"))


def test_agrees_with_the_protobuf_library_both_ways() -> None:
    response_class = _real_response_class()
    real = response_class()
    pod = real.pod_resources.add(name="virt-launcher-a", namespace="default")
    container = pod.containers.add(name="compute", cpu_ids=[2, 3, -1])
    container.devices.add(resource_name=CY, device_ids=["0000:3d:01.1", "0000:3d:01.2"]).topology.nodes.add(ID=1)
    container.memory.add(memory_type="memory", size=1 << 33).topology.nodes.add(ID=0)
    container.dynamic_resources.add(claim_name="claim", claim_namespace="default")
    real.pod_resources.add(name="empty", namespace="prod")
    assert decode_list_response(real.SerializeToString()) == (
        PodResources(
            "default",
            "virt-launcher-a",
            (ContainerResources("compute", (ContainerDevices(CY, ("0000:3d:01.1", "0000:3d:01.2")),)),),
        ),
        PodResources("prod", "empty"),
    )

    parsed = response_class.FromString(encode_list_response(PODS))
    assert [(p.namespace, p.name) for p in parsed.pod_resources] == [(p.namespace, p.name) for p in PODS]
    sidecar = parsed.pod_resources[0].containers[1]
    assert sidecar.name == "sidecar"
    assert [(d.resource_name, list(d.device_ids)) for d in sidecar.devices] == [
        (DC, ["0000:3f:02.0"]),
        (CY, ["0000:3d:01.3"]),
    ]


# --- Allocations --------------------------------------------------------------------------


def test_allocations_merge_containers_per_pod_and_resource() -> None:
    allocations = Allocations.from_pods(PODS)
    assert allocations.devices_of("default", "virt-launcher-a", CY) == frozenset(
        {"0000:3d:01.1", "0000:3d:01.2", "0000:3d:01.3"}
    )
    assert allocations.devices_of("default", "virt-launcher-a", DC) == frozenset({"0000:3f:02.0"})
    assert allocations.devices_of("prod", "virt-launcher-b", CY) == frozenset()
    assert allocations.devices_of("prod", "no-devices", DC) == frozenset()
    assert allocations.resources_of("kube-system", "no-containers") == {}
    assert allocations.devices_of("default", "virt-launcher-b", DC) is None  # right name, wrong namespace
    assert allocations.resources_of("prod", "gone") is None


# --- the client against a fake kubelet ------------------------------------------------------


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    with FakeKubelet(PODS) as fake:
        yield fake


def test_client_reads_allocations_from_kubelet(kubelet: FakeKubelet) -> None:
    client = PodResourcesClient(kubelet.socket_path)
    assert client.available()
    assert client.allocations() == Allocations.from_pods(PODS)
    kubelet.set_allocations([launcher_pod("prod", "virt-launcher-c", {DC: ["0000:3f:02.7"]})])
    allocations = client.allocations()
    assert allocations.devices_of("prod", "virt-launcher-c", DC) == frozenset({"0000:3f:02.7"})
    assert allocations.resources_of("default", "virt-launcher-a") is None
    assert kubelet.calls == 3
    client.close()
    assert client.available()  # a closed client opens a fresh channel
    client.close()


def test_missing_socket_is_unavailable(tmp_path: Any) -> None:
    client = PodResourcesClient(tmp_path / "kubelet.sock")
    assert not client.available()
    with pytest.raises(PodResourcesUnavailable, match=r"kubelet\.sock does not exist \(mount /var/lib/kubelet/pod-res"):
        client.allocations()


def test_socket_with_nobody_listening_is_unavailable(kubelet: FakeKubelet) -> None:
    kubelet.stop()
    kubelet.socket_path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(kubelet.socket_path))  # a kubelet that died and left its socket behind
    client = PodResourcesClient(kubelet.socket_path, timeout=1.0)
    with pytest.raises(PodResourcesUnavailable) as raised:
        client.allocations()
    message = str(raised.value)
    assert message.startswith(f"kubelet pod-resources socket {kubelet.socket_path} is not answering (")
    assert "\n" not in message
    assert not client.available()


def test_slow_kubelet_hits_the_deadline(kubelet: FakeKubelet) -> None:
    kubelet.set_delay(10)
    client = PodResourcesClient(kubelet.socket_path, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(PodResourcesUnavailable, match=r"did not answer List within 0\.2s$"):
        client.allocations()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.UNIMPLEMENTED, "does not serve /v1.PodResourcesLister/List"),
        (grpc.StatusCode.PERMISSION_DENIED, r"failed List \(PERMISSION_DENIED: not allowed\)"),
        (grpc.StatusCode.UNAVAILABLE, r"is not answering \(not allowed\)"),
    ],
)
def test_kubelet_errors_become_one_line(kubelet: FakeKubelet, code: grpc.StatusCode, message: str) -> None:
    kubelet.fail_with(code, "not\nallowed")
    client = PodResourcesClient(kubelet.socket_path)
    with pytest.raises(PodResourcesUnavailable, match=message) as raised:
        client.allocations()
    assert "\n" not in str(raised.value)
    kubelet.fail_with(None)
    assert client.allocations().devices_of("prod", "virt-launcher-b", DC) == frozenset({"0000:3f:02.1"})


def test_malformed_answer_is_unavailable(kubelet: FakeKubelet) -> None:
    kubelet.set_raw_response(b"\x0a\x05abc")
    with pytest.raises(PodResourcesUnavailable, match="is not a ListPodResourcesResponse: field at offset 2 needs 5"):
        PodResourcesClient(kubelet.socket_path).allocations()


def test_client_recovers_when_kubelet_restarts(kubelet: FakeKubelet) -> None:
    client = PodResourcesClient(kubelet.socket_path)
    assert client.available()
    kubelet.stop()
    assert not client.available()
    kubelet.set_allocations([launcher_pod("default", "after-restart", {CY: ["0000:3d:01.4"]})])
    kubelet.start()
    assert client.allocations().devices_of("default", "after-restart", CY) == frozenset({"0000:3d:01.4"})


# --- the kubelet rule: the handoff against kubelet's allocation --------------------------------------------

A = {CY: frozenset({"0000:3d:01.1", "0000:3d:01.2"}), DC: frozenset({"0000:3f:02.0", "dev0"})}


@pytest.mark.parametrize(
    ("handoff", "allocated", "rejected", "resource"),
    [
        ({CY: ["0000:3d:01.1"]}, A, None, None),
        ({CY: ["0000:3d:01.2", "0000:3d:01.1"], DC: ["0000:3f:02.0"]}, A, None, None),
        ({}, A, None, None),
        ({CY: []}, None, None, None),
        ({CY: ["0000:3D:01.1", "3d:01.2"]}, A, None, None),  # upper case and no domain: normalised
        ({CY: ["0000:3d:01.1"]}, {CY: frozenset({"3D:01.1"})}, None, None),  # also on kubelet's side
        ({CY: ["0000:3d:01.1", "0000:3d:01.7"]}, A, "0000:3d:01.7", CY),  # not allocated
        ({CY: ["3D:01.7"]}, A, "0000:3d:01.7", CY),  # named by its normalised address
        ({DC: ["0000:3d:01.1"]}, A, "0000:3d:01.1", DC),  # allocated, but for another resource
        ({"qat.intel.com/other": ["0000:3d:01.1"]}, A, "0000:3d:01.1", "qat.intel.com/other"),
        ({CY: ["0000:3d:01.1"]}, {}, "0000:3d:01.1", CY),  # kubelet knows the pod, no devices
        ({CY: ["dev0"]}, {CY: frozenset({"dev0"})}, "dev0", CY),  # non-BDF IDs match nothing
        ({CY: ["0000:3d:01.9", "0000:3d:01.8"], DC: ["0000:3f:02.9"]}, A, "0000:3d:01.8", CY),  # first in order
    ],
)
def test_check_allocation(
    handoff: dict[str, list[str]],
    allocated: dict[str, frozenset[str]] | None,
    rejected: str | None,
    resource: str | None,
) -> None:
    refusal = check_allocation(handoff, allocated, "default/virt-launcher-a")
    if rejected is None:
        assert refusal is None
        return
    assert refusal is not None
    assert (refusal.reason, refusal.subject) == ("HandoffRejected", rejected)
    assert refusal.problem == (
        f"is not among the devices kubelet allocated to pod default/virt-launcher-a for {resource};"
        " the handoff is forged or stale"
    )
    assert "restart the VMI" in refusal.fix


def test_check_allocation_for_a_pod_kubelet_does_not_know() -> None:
    refusal = check_allocation({CY: ["0000:3d:01.1"]}, None, "default/ghost")
    assert refusal is not None
    assert refusal.line().startswith(
        "0000:3d:01.1 is not among the devices kubelet allocated to pod default/ghost (kubelet lists no such pod)"
        f" for {CY}; the handoff is forged or stale; fix: "
    )


def test_forged_handoff_is_caught_through_a_real_kubelet_socket(kubelet: FakeKubelet) -> None:
    allocations = PodResourcesClient(kubelet.socket_path).allocations()
    own = allocations.resources_of("prod", "virt-launcher-b")
    assert check_allocation({DC: ["3f:02.1"]}, own, "prod/virt-launcher-b") is None
    forged = check_allocation({DC: ["0000:3f:02.0"]}, own, "prod/virt-launcher-b")  # virt-launcher-a's VF
    assert forged is not None
    assert forged.subject == "0000:3f:02.0"
