"""The real ``qat-handler launcher`` and ``qat-handler agent --kubernetes`` processes: the
pod-stop handshake through the handoff slot, and the agent's CLI path against the fake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handler.core.handoff import HANDOFF_FILE
from handler.core.kube_status import FINALIZER
from handler.core.vmi import NODE_LABEL
from tests.kube.agent_harness import NODE, VMIS, Cluster, eventually

REPO = Path(__file__).resolve().parents[2]


def qat_handler(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QAT", "PCI_RESOURCE_", "KUBECONFIG"))}
    return subprocess.Popen(
        [sys.executable, "-m", "handler", *args],
        cwd=REPO,
        env={**environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_launcher(cluster: Cluster, vmi: dict[str, Any], pod_uid: str, grace: int, qat0: str) -> subprocess.Popen[str]:
    meta = vmi["metadata"]
    return qat_handler(
        "launcher",
        "--run-dir", str(cluster.slot_dir(pod_uid)),
        "--namespace", meta["namespace"],
        "--name", meta["name"],
        "--uid", meta["uid"],
        "--pod-uid", pod_uid,
        "--grace-seconds", str(grace),
        "--log-format", "json",
        env={"QAT0": qat0},
    )  # fmt: skip


def handoff(cluster: Cluster, pod_uid: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((cluster.slot_dir(pod_uid) / HANDOFF_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"{process.args[3]} did not exit:\n{out}\n{err}") from None
    return process.returncode, out + err


def test_pod_stop_waits_for_the_agent_to_power_the_guest_off(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("stopping", grace=30)
    pod_uid = cluster.create_pod(vmi)
    bdf = str(cluster.usable_vfs[0])
    launcher = start_launcher(cluster, vmi, pod_uid, grace=30, qat0=bdf)
    try:
        eventually(lambda: cluster.phase("stopping") == "Running", what="Running from the launcher's handoff")
        assert handoff(cluster, pod_uid)["env"] == {"QAT0": bdf}
        # Hold the agent's reply back: status writes fail until the faults are cleared.
        cluster.server.fail_next("PATCH", rf"/{VMIS}/stopping$", 503, times=10_000)

        launcher.send_signal(signal.SIGTERM)
        eventually(lambda: handoff(cluster, pod_uid).get("stopRequested") is True, what="stopRequested")
        eventually(lambda: not cluster.domain_running("stopping"), what="the agent to power the guest off")
        launcher.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            launcher.wait(timeout=1.0)  # a second SIGTERM does not cut the wait for the report short
        assert not (cluster.report(pod_uid) or {}).get("guestOff")

        cluster.server.clear_faults()
        code, output = finish(launcher, timeout=20)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert code == 0, output
    assert "guest is off" in output
    report = cluster.report(pod_uid)
    assert report is not None and report["guestOff"] is True and report["vmiUID"] == vmi["metadata"]["uid"]
    assert cluster.phase("stopping") == "Succeeded"
    eventually(lambda: cluster.domain("stopping") is None, what="the stopped domain to be undefined")
    assert "Stopped" in cluster.event_reasons(vmi["metadata"]["uid"])


def test_launcher_gives_up_when_no_agent_answers(cluster: Cluster) -> None:
    """No agent: the launcher exits 1 after its grace plus the 15 s margin (grace 0: 15 s)."""
    vmi = cluster.create_vmi("unanswered")
    pod_uid = cluster.create_pod(vmi)
    launcher = start_launcher(cluster, vmi, pod_uid, grace=0, qat0=str(cluster.usable_vfs[0]))
    try:
        eventually(lambda: handoff(cluster, pod_uid), what="the handoff")
        launcher.send_signal(signal.SIGTERM)
        eventually(lambda: handoff(cluster, pod_uid).get("stopRequested") is True, what="stopRequested")
        # Reports that do not say this VMI's guest is off must not release the launcher.
        slot = cluster.slot_dir(pod_uid)
        for report in (
            {"version": 1, "vmiUID": vmi["metadata"]["uid"], "phase": "Running", "guestOff": False},
            {"version": 1, "vmiUID": "someone-else", "phase": "Succeeded", "guestOff": True},
        ):
            (slot / "agent.json.tmp").write_text(json.dumps(report))
            (slot / "agent.json.tmp").rename(slot / "agent.json")
        code, output = finish(launcher, timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert code == 1, output
    assert "did not report the guest off in time" in output


def test_agent_cli_in_kubernetes_mode(cluster: Cluster, tmp_path: Path) -> None:
    """``qat-handler agent --kubernetes`` with KUBECONFIG, and a launcher process, end to end."""
    kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
    cluster.set_configmap_gates("QAT")
    agent = qat_handler(
        "agent", "--kubernetes",
        "--node-name", NODE,
        "--connect", "test:///default",
        "--run-dir", str(cluster.run_dir),
        "--state-dir", str(tmp_path / "cli-state"),
        "--host-root", str(cluster.host_root),
        "--pod-resources-socket", str(tmp_path / "no-kubelet.sock"),
        "--log-format", "json",
        "--on-stop", "keep",
        env={"KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip
    launcher = None
    try:
        vmi = cluster.create_vmi("cli")
        pod_uid = cluster.create_pod(vmi)
        launcher = start_launcher(cluster, vmi, pod_uid, grace=30, qat0=str(cluster.usable_vfs[0]))
        eventually(lambda: cluster.phase("cli") == "Running", timeout=20, what="Running via the CLI agent")
        assert cluster.finalizers("cli") == [FINALIZER]
        assert (cluster.vmi("cli") or {}).get("status", {}).get("nodeName") == NODE
        assert cluster.domain("cli") is None, "the CLI agent's test:///default lives in its own process"

        launcher.send_signal(signal.SIGTERM)
        code, output = finish(launcher, timeout=20)
        assert code == 0, output
        assert cluster.phase("cli") == "Succeeded"

        agent.send_signal(signal.SIGTERM)
        code, output = finish(agent, timeout=20)
    finally:
        for process in (agent, launcher):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    assert code == 0, output
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    messages = [record.get("event") for record in records]
    assert "agent started" in messages and "agent stopped" in messages
    assert next(r for r in records if r.get("event") == "agent stopped")["policy"] == "keep"
    assert {"Created", "Started", "Stopped"} <= set(cluster.event_reasons(vmi["metadata"]["uid"]))
    requests = cluster.server.requests("GET", rf"/{VMIS}$", watch=True)
    assert requests and all(r.query.get("labelSelector") == f"{NODE_LABEL}={NODE}" for r in requests)
    assert all(r.query.get("allowWatchBookmarks") == "true" for r in requests)
