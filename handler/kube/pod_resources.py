"""Kubelet's pod-resources API: which device IDs kubelet allocated to which pod.

Kubelet serves gRPC ``v1.PodResourcesLister`` on a unix socket. We call only ``List`` and
read only pod name, namespace, and per container the device IDs of each resource
(``ListPodResourcesResponse.pod_resources = 1``, ``PodResources.name = 1 / namespace = 2 /
containers = 3``, ``ContainerResources.devices = 2``, ``ContainerDevices.resource_name = 1 /
device_ids = 2``); every other field is skipped. The messages are coded by hand with
``protowire`` so that no generated code is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc

from handler.kube import protowire
from handler.kube.protowire import WireError

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
LIST_METHOD = "/v1.PodResourcesLister/List"


class PodResourcesUnavailable(Exception):
    """Kubelet's pod-resources API cannot be asked; the message is one line naming the socket."""


# -- the messages we read --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    resource_name: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContainerResources:
    name: str
    devices: tuple[ContainerDevices, ...] = ()


@dataclass(frozen=True, slots=True)
class PodResources:
    namespace: str
    name: str
    containers: tuple[ContainerResources, ...] = ()


def encode_list_response(pods: Iterable[PodResources]) -> bytes:
    """A ``ListPodResourcesResponse`` (what kubelet sends; used by the fake kubelet in tests)."""
    return b"".join(protowire.len_field(1, _encode_pod(pod)) for pod in pods)


def _encode_pod(pod: PodResources) -> bytes:
    out = protowire.string_field(1, pod.name) + protowire.string_field(2, pod.namespace)
    for container in pod.containers:
        body = protowire.string_field(1, container.name)
        for devices in container.devices:
            entry = protowire.string_field(1, devices.resource_name)
            entry += b"".join(protowire.string_field(2, device_id) for device_id in devices.device_ids)
            body += protowire.len_field(2, entry)
        out += protowire.len_field(3, body)
    return out


def decode_list_response(data: bytes) -> tuple[PodResources, ...]:
    """Read a ``ListPodResourcesResponse``; raise WireError when the bytes are malformed."""
    return tuple(_decode_pod(item.payload()) for item in protowire.fields(data) if item.number == 1)


def _decode_pod(data: bytes) -> PodResources:
    name = namespace = ""
    containers: list[ContainerResources] = []
    for item in protowire.fields(data):
        if item.number == 1:
            name = item.text()
        elif item.number == 2:
            namespace = item.text()
        elif item.number == 3:
            containers.append(_decode_container(item.payload()))
    return PodResources(namespace, name, tuple(containers))


def _decode_container(data: bytes) -> ContainerResources:
    name = ""
    devices: list[ContainerDevices] = []
    for item in protowire.fields(data):
        if item.number == 1:
            name = item.text()
        elif item.number == 2:
            devices.append(_decode_devices(item.payload()))
    return ContainerResources(name, tuple(devices))


def _decode_devices(data: bytes) -> ContainerDevices:
    resource = ""
    ids: list[str] = []
    for item in protowire.fields(data):
        if item.number == 1:
            resource = item.text()
        elif item.number == 2:
            ids.append(item.text())
    return ContainerDevices(resource, tuple(ids))


# -- what the agent asks -------------------------------------------------------------------


PodKey = tuple[str, str]
ResourceDevices = Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Allocations:
    """Device IDs per resource for each pod kubelet knows, all containers merged."""

    pods: Mapping[PodKey, ResourceDevices] = field(default_factory=dict)
    """``(namespace, pod name) -> {resource name: device IDs}``; a listed pod without devices maps to {}."""

    @classmethod
    def from_pods(cls, pods: Iterable[PodResources]) -> Allocations:
        merged: dict[PodKey, dict[str, set[str]]] = {}
        for pod in pods:
            resources = merged.setdefault((pod.namespace, pod.name), {})
            for container in pod.containers:
                for devices in container.devices:
                    resources.setdefault(devices.resource_name, set()).update(devices.device_ids)
        frozen = {
            key: MappingProxyType({name: frozenset(ids) for name, ids in resources.items()})
            for key, resources in merged.items()
        }
        return cls(MappingProxyType(frozen))

    def resources_of(self, namespace: str, pod: str) -> ResourceDevices | None:
        """The pod's device IDs per resource, or None when kubelet lists no such pod."""
        return self.pods.get((namespace, pod))

    def devices_of(self, namespace: str, pod: str, resource: str) -> frozenset[str] | None:
        """The pod's device IDs for one resource (empty if none), or None when kubelet lists no such pod."""
        resources = self.resources_of(namespace, pod)
        if resources is None:
            return None
        return resources.get(resource, frozenset())


class PodResourcesClient:
    """Asks kubelet's pod-resources socket. Thread-safe; one channel, which gRPC reconnects by itself
    when kubelet restarts and recreates the socket."""

    def __init__(self, socket_path: Path = DEFAULT_SOCKET, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None

    def available(self) -> bool:
        """True when the socket exists and a List call succeeds."""
        try:
            self.allocations()
        except PodResourcesUnavailable:
            return False
        return True

    def allocations(self) -> Allocations:
        """What kubelet has allocated now, or PodResourcesUnavailable with a one-line reason."""
        return Allocations.from_pods(self.list_pods())

    def list_pods(self) -> Sequence[PodResources]:
        if not self.socket_path.exists():
            raise PodResourcesUnavailable(
                f"kubelet pod-resources socket {self.socket_path} does not exist"
                " (mount /var/lib/kubelet/pod-resources into the agent's pod)"
            )
        try:
            raw = self._list_call()(b"", timeout=self.timeout)
        except grpc.RpcError as error:
            raise PodResourcesUnavailable(self._explain(error)) from error
        try:
            return decode_list_response(raw)
        except WireError as error:
            raise PodResourcesUnavailable(
                f"kubelet's List answer on {self.socket_path} is not a ListPodResourcesResponse: {error}"
            ) from error

    def close(self) -> None:
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def _list_call(self) -> Any:
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel("unix://" + str(self.socket_path.absolute()))
            return self._channel.unary_unary(LIST_METHOD, request_serializer=_raw, response_deserializer=_raw)

    def _explain(self, error: grpc.RpcError) -> str:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
        where = f"kubelet pod-resources socket {self.socket_path}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"{where} did not answer List within {self.timeout:g}s"
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return f"{where} does not serve {LIST_METHOD}"
        if code == grpc.StatusCode.UNAVAILABLE:
            return f"{where} is not answering ({_one_line(details)})"
        name = code.name if code is not None else "error"
        return f"{where} failed List ({name}: {_one_line(details)})"


def _raw(data: bytes) -> bytes:
    """The request is empty and the response is decoded after the call, so errors can name it."""
    return data


def _one_line(text: str) -> str:
    return " ".join(text.split())
