"""API calls that get no HTTP answer at all (a cut connection) fail like any other failed call:
the reconcile reports them and retries; it never crashes. Found by the API chaos test (R3)."""

from __future__ import annotations

import pytest
import structlog

from tests.kube.agent_harness import VMIS, Cluster, eventually


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", r"/events$", id="event"),
        pytest.param("PATCH", rf"/{VMIS}/cut$", id="status-or-finalizer"),
        pytest.param("GET", rf"/{VMIS}/cut$", id="read-before-finalizer"),
    ],
)
def test_a_cut_connection_is_a_failed_call_not_a_crash(cluster: Cluster, method: str, path: str) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    cluster.server.fail_next(method, path, 0, times=2, reset=True)
    with structlog.testing.capture_logs() as logs:
        vmi = cluster.create_vmi("cut")
        cluster.launch(vmi, cluster.usable_vfs[0])
        eventually(lambda: cluster.phase("cut") == "Running" and cluster.domain_running("cut"), timeout=30)
    cut = [r for r in cluster.server.requests(method, path) if r.status == 0]
    assert cut, "the fault was not injected"
    assert not [entry for entry in logs if entry["event"] == "reconcile crashed"]
