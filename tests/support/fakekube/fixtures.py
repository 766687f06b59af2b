"""pytest fixtures. Import them into a conftest.py (or a test module) to use them:

from tests.support.fakekube.fixtures import fake_apiserver, fake_apiserver_factory  # noqa: F401
from tests.support.fakekube.fixtures import fake_cluster, fake_cluster_factory  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import FakeCluster, NodeSpec
from .server import FakeApiServer


@pytest.fixture
def fake_apiserver() -> Iterator[FakeApiServer]:
    """A started server with default settings (no VMI status subresource, 1 s bookmarks)."""
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def fake_apiserver_factory() -> Iterator[Callable[..., FakeApiServer]]:
    """``factory(**FakeApiServer kwargs)`` -> a started server; all are stopped at teardown."""
    servers: list[FakeApiServer] = []

    def start(**kwargs: Any) -> FakeApiServer:
        server = FakeApiServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    """A started fake cluster: API server, garbage collector, scheduler, and node ``node01``, whose kubelet
    offers 2 VFs of a simulated C62x host as ``qat.intel.com/generic`` and runs each pod bound to it as local
    processes (``qat-handler launcher`` for a launcher pod). For other sizes use ``fake_cluster_factory``.

        def test_x(fake_cluster):
            core = client.CoreV1Api(fake_cluster.api_client())
            node = fake_cluster.node()          # node.host_root, node.run_dir, node.vfs, node.free_vfs()

    An agent for node01 is given ``--host-root node.host_root --run-dir node.run_dir`` (and
    ``--pod-resources-socket node.pod_resources_socket`` with ``NodeSpec(pod_resources=True)``).
    At teardown every process is killed, and the test fails if a controller of the fake raised.
    """
    yield from _cluster(tmp_path, (NodeSpec(),))


@pytest.fixture
def fake_cluster_factory(tmp_path: Path) -> Iterator[Callable[..., FakeCluster]]:
    """``factory(*NodeSpec, server=None)`` -> a started ``FakeCluster`` (one per test); stopped at teardown."""
    made: list[Iterator[FakeCluster]] = []

    def start(*nodes: NodeSpec, server: FakeApiServer | None = None) -> FakeCluster:
        gen = _cluster(tmp_path / f"cluster{len(made)}", nodes or (NodeSpec(),), server)
        made.append(gen)
        return next(gen)

    yield start
    for gen in made:
        next(gen, None)


def _cluster(work: Path, nodes: tuple[NodeSpec, ...], server: FakeApiServer | None = None) -> Iterator[FakeCluster]:
    cluster = FakeCluster(work, nodes, server=server).start()
    try:
        yield cluster
    finally:
        cluster.stop()
    problems = cluster.errors + cluster.server.internal_errors
    assert not problems, "the fake cluster itself failed:\n" + "\n".join(problems)
