"""The controller and the Kubernetes agent refuse to start where KubeVirt runs, with one line
naming what was found and what to do; both through the CLI, as a user starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakekube import FakeApiServer

VIRT_CONTROLLER: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "virt-controller", "namespace": "kubevirt"},
    "spec": {"replicas": 2},
}


def kubevirt_cr(phase: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {},
        "status": {"phase": phase},
    }


def environ(server: FakeApiServer, tmp_path: Path) -> dict[str, str]:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    return {**env, "KUBECONFIG": str(kubeconfig), "POD_NAME": "controller-0"}


CONTROLLER = [sys.executable, "-m", "handler", "controller", "--launcher-image", "qat-handler:0.1.0"]
AGENT = [
    sys.executable,
    "-m",
    "handler",
    "agent",
    "--kubernetes",
    "--node-name",
    "node01",
    "--connect",
    "test:///default",
]


@pytest.mark.parametrize("command", [CONTROLLER, AGENT], ids=["controller", "agent"])
@pytest.mark.parametrize(
    ("found", "named"),
    [
        (VIRT_CONTROLLER, "Deployment kubevirt/virt-controller"),
        (kubevirt_cr("Deployed"), "KubeVirt kubevirt/kubevirt (phase Deployed)"),
    ],
    ids=["virt-controller", "kubevirt-cr"],
)
def test_refuses_to_start_beside_kubevirt(
    server: FakeApiServer, tmp_path: Path, command: list[str], found: dict[str, Any], named: str
) -> None:
    server.put_object(found)
    done = subprocess.run(
        [*command, "--state-dir", str(tmp_path)] if command is AGENT else command,
        env=environ(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert "fix: use KubeVirt itself on this cluster, or uninstall KubeVirt" in lines[0]
    assert server.objects("pods") == [] and server.objects("leases", "qat-handler") == []


def test_a_kubevirt_cr_that_is_not_deployed_and_no_virt_controller_is_no_conflict(
    server: FakeApiServer, tmp_path: Path
) -> None:
    server.put_object(kubevirt_cr("Deleted"))
    server.put_object({**VIRT_CONTROLLER, "metadata": {"name": "virt-controller", "namespace": "elsewhere"}})
    process = subprocess.Popen(
        [*CONTROLLER, "--lease-namespace", "qat-handler"],
        env=environ(server, tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not server.objects("leases", "qat-handler") and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        (lease,) = server.objects("leases", "qat-handler")
        assert lease["spec"]["holderIdentity"] == "controller-0"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    (lease,) = server.objects("leases", "qat-handler")
    assert lease["spec"]["holderIdentity"] == "", "a clean stop releases the lease for the standby"


def test_the_readme_shows_the_line_the_controller_prints(server: FakeApiServer, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (shown,) = [line for line in readme.splitlines() if line.startswith("qat-handler: KubeVirt (")]
    server.put_object(VIRT_CONTROLLER)
    done = subprocess.run(CONTROLLER, env=environ(server, tmp_path), capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == shown
