"""The agent against an unreliable API server: dropped watches, 410 Gone, conflicts."""

from __future__ import annotations

import pytest

from handler.core.kube_status import FINALIZER
from handler.kube.launcher_pods import pod_with_uid
from tests.kube.agent_harness import GROUP, VMIS, Cluster, eventually

COLLECTION = rf"^/apis/kubevirt.io/v1/{VMIS}$"
"""The all-namespaces VMI collection the agent lists and watches."""


def hold_vmi_watches(cluster: Cluster) -> None:
    """Cut the agent's VMI watch and refuse new ones until ``cluster.server.clear_faults()``."""
    before = len(cluster.server.requests("GET", COLLECTION, watch=True))
    cluster.server.fail_next("GET", COLLECTION, 503, times=10_000, watch=True)
    assert cluster.server.drop_watches(VMIS, group="kubevirt.io") >= 1
    eventually(
        lambda: any(r.status == 503 for r in cluster.server.requests("GET", COLLECTION, watch=True)[before:]),
        what="the agent to try to watch again and be refused",
    )


def relists(cluster: Cluster) -> int:
    return len(cluster.server.requests("GET", COLLECTION, watch=False))


@pytest.mark.parametrize("history", ["kept", "compacted"])
def test_vmi_deleted_while_the_watch_is_down_is_cleaned_up(cluster: Cluster, history: str) -> None:
    """Kept history: the reopened watch replays the delete. Compacted: 410, relist, diff."""
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("vanishing", grace=5)
    cluster.launch(vmi, cluster.usable_vfs[0])
    survivor = cluster.create_vmi("survivor")
    cluster.launch(survivor, cluster.usable_vfs[1])
    eventually(lambda: cluster.phase("vanishing") == "Running" and cluster.phase("survivor") == "Running")
    listed = relists(cluster)

    hold_vmi_watches(cluster)
    cluster.delete_vmi("vanishing")
    # Someone strips the finalizer by hand while the agent cannot see: the VMI is gone for good.
    cluster.custom.patch_namespaced_custom_object(
        "kubevirt.io", "v1", cluster.namespace, VMIS, "vanishing", {"metadata": {"finalizers": None}}
    )
    assert cluster.vmi("vanishing") is None
    if history == "compacted":
        cluster.server.compact()
    assert cluster.domain_running("vanishing"), "nothing may happen while the agent is blind"
    cluster.server.clear_faults()

    eventually(lambda: cluster.domain("vanishing") is None, what="the orphaned domain to be undefined")
    assert (relists(cluster) > listed) is (history == "compacted")
    assert cluster.domain_running("survivor")
    assert cluster.phase("survivor") == "Running"


def test_410_relists_and_picks_up_what_was_created_meanwhile(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    before = cluster.create_vmi("before")
    cluster.launch(before, cluster.usable_vfs[0])
    eventually(lambda: cluster.phase("before") == "Running", what="Running")
    listed = relists(cluster)

    hold_vmi_watches(cluster)
    during = cluster.create_vmi("during")
    cluster.launch(during, cluster.usable_vfs[1])
    cluster.server.compact()
    cluster.server.clear_faults()

    eventually(lambda: cluster.phase("during") == "Running", what="the VMI created during the outage")
    assert relists(cluster) > listed
    assert cluster.server.requests("GET", COLLECTION, watch=True)[-1].status == 200, "the watch is open again"
    assert cluster.domain_running("during") and cluster.domain_running("before")

    # And the agent keeps working on the new stream.
    after = cluster.create_vmi("after")
    cluster.launch(after, cluster.usable_vfs[2])
    eventually(lambda: cluster.phase("after") == "Running", what="a VMI created after the relist")


def test_conflicting_status_patch_is_retried(any_cluster: Cluster) -> None:
    cluster = any_cluster
    subresource = cluster.server.resource_type(VMIS, GROUP).status_subresource
    target = rf"/{VMIS}/contested/status$" if subresource else rf"/{VMIS}/contested$"
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    cluster.server.fail_next("PATCH", target, 409, times=2)
    vmi = cluster.create_vmi("contested")
    pod_uid = cluster.create_pod(vmi)

    eventually(lambda: cluster.synchronized_reason("contested") == "WaitingForLauncher", what="the status to land")
    writes = [r for r in cluster.server.requests("PATCH", target) if any(p.startswith("status") for p in r.touched)]
    assert [r.status for r in writes[:3]] == [409, 409, 200]
    guards = {r.body["metadata"]["resourceVersion"] for r in writes[:3]}
    assert len(guards) == 1, "each try is guarded by the version the status was computed from"
    rereads = [r for r in cluster.server.requests("GET", rf"/{VMIS}/contested$") if r.status == 200]
    assert len(rereads) >= 2, "after each conflict the VMI is read afresh before the body is made again"

    cluster.write_handoff(pod_uid, vmi, {"QAT0": str(cluster.usable_vfs[0])})
    eventually(lambda: cluster.phase("contested") == "Running", what="Running")


def test_status_made_from_a_stale_cache_is_remade_from_the_fresh_vmi(cluster: Cluster) -> None:
    """The agent's cache is behind (its watch is cut) when someone else changes the VMI: its
    guarded status patch conflicts for real, and the status is made again from the VMI as it is.

    The VMI already carries the finalizer (as an earlier agent run leaves it), so the pass writes
    nothing before its status: a finalizer patch would return the newer VMI and avoid the conflict."""
    cluster.set_configmap_gates("QAT")
    node = cluster.start_agent()
    vmi = cluster.create_vmi("stale")
    pod_uid = cluster.create_pod(vmi)
    eventually(lambda: cluster.synchronized_reason("stale") == "WaitingForLauncher", what="the first status")
    claimed = cluster.custom.patch_namespaced_custom_object(
        GROUP, "v1", cluster.namespace, VMIS, "stale", {"metadata": {"finalizers": [FINALIZER]}}
    )
    eventually(
        lambda: (
            (node.source.vmis.get(f"{cluster.namespace}/stale") or {}).get("metadata", {}).get("resourceVersion")
            == claimed["metadata"]["resourceVersion"]
        ),
        what="the agent's cache to show the finalizer",
    )

    hold_vmi_watches(cluster)
    cluster.custom.patch_namespaced_custom_object(
        GROUP, "v1", cluster.namespace, VMIS, "stale", {"metadata": {"annotations": {"example.org/touched": "yes"}}}
    )
    cluster.write_handoff(pod_uid, vmi, {"QAT0": str(cluster.usable_vfs[0])})

    eventually(lambda: cluster.phase("stale") == "Running", what="Running, written over the newer version")
    target = rf"/{VMIS}/stale(/status)?$"
    writes = [r for r in cluster.server.requests("PATCH", target) if any(p.startswith("status") for p in r.touched)]
    assert 409 in [r.status for r in writes], "the stale write met the newer resourceVersion"
    assert writes[-1].status == 200
    annotations = (cluster.vmi("stale") or {})["metadata"]["annotations"]
    assert annotations["example.org/touched"] == "yes", "nothing of the other writer's change is lost"
    cluster.server.clear_faults()


def test_a_healthy_agent_never_conflicts_with_itself(any_cluster: Cluster) -> None:
    """Finalizer, status and annotation writes each make a new resourceVersion; the guarded
    status patch goes first (with /status, the annotations follow it), so none of the agent's
    own writes makes its next guard stale."""
    cluster = any_cluster
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    for index in range(3):
        vmi = cluster.create_vmi(f"quick-{index}", grace=5)
        cluster.launch(vmi, cluster.usable_vfs[index])
    for index in range(3):
        eventually(lambda name=f"quick-{index}": cluster.phase(name) == "Running", what="Running")
        cluster.delete_vmi(f"quick-{index}")
    for index in range(3):
        eventually(lambda name=f"quick-{index}": cluster.vmi(name) is None, what="the VMI to be gone")

    patches = cluster.server.requests("PATCH", rf"/{VMIS}/quick-")
    assert len(patches) >= 9
    assert [r.path for r in patches if r.status == 409] == []


def test_a_status_written_before_the_watch_echoes_the_finalizer_does_not_conflict(any_cluster: Cluster) -> None:
    """The pass that starts a guest adds the finalizer, then writes the status. With the watch
    held back, the informer still shows the version from before the finalizer: the status patch
    is guarded by the version the agent's own finalizer patch returned, not by that stale copy."""
    cluster = any_cluster
    cluster.set_configmap_gates("QAT")
    node = cluster.start_agent()
    vmi = cluster.create_vmi("held", grace=5)
    pod_uid = cluster.create_pod(vmi)
    eventually(lambda: cluster.condition("held", "Synchronized") is not None, what="a first status")

    def cache_current() -> bool:
        cached, served = node.source.vmis.get(f"{cluster.namespace}/held"), cluster.vmi("held")
        version = ((cached or {}).get("metadata") or {}).get("resourceVersion")
        return served is not None and version == served["metadata"]["resourceVersion"]

    eventually(cache_current, what="the informer to hold the VMI as served")
    # The handoff is checked against the launcher pod in the agent's cache: it must be there
    # before the watches are held (under load its ADDED event can still be on its way).
    eventually(lambda: pod_with_uid(node.source.pods.items(), pod_uid), what="the informer to hold the pod")
    patches_before = len(cluster.server.requests("PATCH", rf"/{VMIS}/held"))
    cluster.server.pause_watches()
    try:
        cluster.write_handoff(pod_uid, vmi, {"QAT0": str(cluster.usable_vfs[0])})
        eventually(lambda: cluster.phase("held") == "Running", what="Running while the watch is held")
        assert not cache_current(), "the watch was not held: nothing was tested"
    finally:
        cluster.server.resume_watches()
    patches = cluster.server.requests("PATCH", rf"/{VMIS}/held")[patches_before:]
    assert patches, "no patch while the watch was held"
    assert [r.status for r in patches if r.status == 409] == [], [(r.method, r.status) for r in patches]
