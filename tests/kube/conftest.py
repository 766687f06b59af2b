"""Fixtures for the Kubernetes-mode agent tests (see ``agent_harness``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.kube.agent_harness import Cluster, open_test_hypervisor
from tests.support.fakekube import FakeApiServer


@pytest.fixture
def libvirt_test_conn() -> Iterator[libvirt.virConnect]:
    conn = open_test_hypervisor()
    try:
        yield conn
    finally:
        conn.close()


def _cluster(server: FakeApiServer, tmp_path: Path, conn: libvirt.virConnect) -> Iterator[Cluster]:
    cluster = Cluster(server, tmp_path, conn)
    try:
        yield cluster
    finally:
        cluster.close()
        errors = server.internal_errors
        server.stop()
        assert not errors, "the fake API server itself failed:\n" + "\n".join(errors)


@pytest.fixture
def cluster(tmp_path: Path, libvirt_test_conn: libvirt.virConnect) -> Iterator[Cluster]:
    """KubeVirt's own CRD shape: no status subresource on VMIs. The QAT gate is not set up."""
    server = FakeApiServer(bookmark_interval=0.5)
    server.start()
    yield from _cluster(server, tmp_path, libvirt_test_conn)


@pytest.fixture(params=[False, True], ids=["no-status-subresource", "status-subresource"])
def any_cluster(
    request: pytest.FixtureRequest, tmp_path: Path, libvirt_test_conn: libvirt.virConnect
) -> Iterator[Cluster]:
    """Both ways a cluster may serve VMIs: status through the main resource, or through /status."""
    server = FakeApiServer(bookmark_interval=0.5, vmi_status_subresource=request.param)
    server.start()
    yield from _cluster(server, tmp_path, libvirt_test_conn)
