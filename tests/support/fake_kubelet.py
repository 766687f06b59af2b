"""A fake kubelet pod-resources API: a real gRPC server on a unix socket in its own tmp dir.

It serves ``v1.PodResourcesLister/List`` with whatever allocations the test sets, and can
be made slow, made to fail with a gRPC status, or made to answer with raw bytes.

    with FakeKubelet([PodResources("default", "virt-launcher-a", (...))]) as kubelet:
        client = PodResourcesClient(kubelet.socket_path)
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from concurrent import futures
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from handler.kube.pod_resources import ContainerDevices, ContainerResources, PodResources, encode_list_response


def launcher_pod(namespace: str, name: str, devices: Mapping[str, Iterable[str]]) -> PodResources:
    """A pod with one ``compute`` container holding ``{resource name: device IDs}``."""
    entries = tuple(ContainerDevices(resource, tuple(ids)) for resource, ids in devices.items())
    return PodResources(namespace, name, (ContainerResources("compute", entries),))


class FakeKubelet:
    def __init__(self, pods: Iterable[PodResources] = ()) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="fake-kubelet-"))
        self.socket_path = self._dir / "kubelet.sock"
        self._lock = threading.Lock()
        self._pods: tuple[PodResources, ...] = tuple(pods)
        self._raw: bytes | None = None
        self._failure: tuple[grpc.StatusCode, str] | None = None
        self._delay = 0.0
        self._released = threading.Event()
        self._server: grpc.Server | None = None
        self.calls = 0

    # -- what the test configures ----------------------------------------------------------
    def set_allocations(self, pods: Iterable[PodResources]) -> None:
        with self._lock:
            self._pods = tuple(pods)

    def set_raw_response(self, data: bytes | None) -> None:
        """Answer List with these bytes instead of the encoded allocations (None: stop doing so)."""
        with self._lock:
            self._raw = data

    def fail_with(self, code: grpc.StatusCode | None, details: str = "injected failure") -> None:
        with self._lock:
            self._failure = (code, details) if code is not None else None

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering (cut short by ``stop()``)."""
        with self._lock:
            self._delay = seconds

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeKubelet:
        self.socket_path.unlink(missing_ok=True)
        self._released.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(self._list, request_deserializer=None, response_serializer=None)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("v1.PodResourcesLister", {"List": handler}),)
        )
        server.add_insecure_port("unix:" + str(self.socket_path))
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving; the tmp dir stays, so ``start()`` can bring kubelet back at the same path."""
        self._released.set()
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the List method ---------------------------------------------------------------------
    def _list(self, _request: bytes, context: Any) -> bytes:
        with self._lock:
            self.calls += 1
            pods, raw, failure, delay = self._pods, self._raw, self._failure, self._delay
        if delay:
            self._released.wait(delay)
        if failure is not None:
            context.abort(*failure)
        return raw if raw is not None else encode_list_response(pods)
