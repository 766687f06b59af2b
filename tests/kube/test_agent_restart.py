"""Restart safety (KubeVirt bug #18763 is the warning): a new agent with an empty cache
adopts the running domains; it never restarts, fails or undefines them."""

from __future__ import annotations

from typing import Any

import libvirt

from tests.kube.agent_harness import VMIS, Cluster, eventually


def bad_status_writes(records: list[Any]) -> list[Any]:
    """Status patches that would mark a VMI anything but Running and in sync."""
    bad = []
    for record in records:
        status = (record.body or {}).get("status") or {}
        if not status:
            continue
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if status.get("phase") != "Running" or conditions.get("Synchronized") == "False":
            bad.append(record.body)
    return bad


def test_restarted_agent_adopts_running_domains(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    first = cluster.start_agent()
    names = ("alpha", "beta")
    uids = {}
    for name, bdf in zip(names, cluster.usable_vfs, strict=False):
        vmi = cluster.create_vmi(name)
        uids[name] = vmi["metadata"]["uid"]
        cluster.launch(vmi, bdf)
    eventually(lambda: all(cluster.phase(n) == "Running" for n in names), what="both Running")
    eventually(lambda: all({"Created", "Started"} <= set(cluster.event_reasons(u)) for u in uids.values()))
    ids = {name: cluster.must_domain(name).ID() for name in names}
    xml = {name: cluster.must_domain(name).XMLDesc(0) for name in names}
    events_before = {name: cluster.event_reasons(uid) for name, uid in uids.items()}

    cluster.stop_agent(first)  # --on-stop keep, as the DaemonSet runs it
    assert all(cluster.domain_running(name) for name in names)
    cluster.server.clear_requests()
    cluster.lifecycle.clear()

    # The API server hiccups as the new agent comes up: its first VMI lists fail, so for a
    # while it knows the domains but not the VMIs. That is no evidence of a delete.
    cluster.server.fail_next("GET", rf"^/apis/kubevirt.io/v1/{VMIS}$", 503, times=3, watch=False)
    second = cluster.start_agent()
    assert second.engine.wait_idle(5.0)
    # Prove the new agent is live (not merely quiet) before judging what it did not do.
    late = cluster.create_vmi("gamma")
    cluster.launch(late, cluster.usable_vfs[2])
    eventually(lambda: cluster.phase("gamma") == "Running", what="the new agent to work")
    assert second.engine.wait_idle(5.0)

    for name in names:
        assert cluster.must_domain(name).ID() == ids[name], f"{name} was restarted"
        assert cluster.must_domain(name).XMLDesc(0) == xml[name], f"{name} was redefined"
        assert cluster.phase(name) == "Running"
        assert cluster.synchronized_reason(name) is None
        assert cluster.event_reasons(uids[name]) == events_before[name], "no new Created/Started"
    gamma = cluster.domain_name("gamma")
    eventually(lambda: gamma in {dom for dom, _ in cluster.lifecycle}, what="libvirt events reach the harness")
    touched = {dom for dom, _ in cluster.lifecycle}
    assert touched == {gamma}, f"libvirt saw changes to {touched}"
    patches = cluster.server.requests("PATCH", rf"/{VMIS}/(alpha|beta)")
    assert bad_status_writes(patches) == []
    assert all("finalizers" not in (r.body.get("metadata") or {}) for r in patches), "the finalizer is already there"
    assert libvirt.VIR_DOMAIN_EVENT_UNDEFINED not in {event for _, event in cluster.lifecycle}
    failed_lists = cluster.server.requests("GET", rf"^/apis/kubevirt.io/v1/{VMIS}$", watch=False)[:3]
    assert [r.status for r in failed_lists] == [503, 503, 503], "the hiccup happened"
