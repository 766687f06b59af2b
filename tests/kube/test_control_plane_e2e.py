"""The whole Kubernetes path end to end on the fake cluster, with real processes and `kubectl`.

The fake cluster (tests/support/fakekube) is the API server, which calls the registered
ValidatingWebhookConfiguration over HTTPS and garbage-collects by ownerReference; a
scheduler that binds a pod only where the node's allocatable QAT resource fits; and a kubelet
that runs each bound pod's real `qat-handler launcher` with ``QAT0..`` from the free VFs of
its simulated QAT host. On top: two `qat-handler controller` replicas, `qat-handler webhook`,
and `qat-handler agent --kubernetes` on test:///default, each a process started as a user
would, and `kubectl` for everything a user types.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from handler.core.kube_status import DEVICES_ANNOTATION, FINALIZER
from handler.core.vmi import NODE_LABEL
from handler.core.webhook_settings import WebhookTlsSettings
from tests.fakekube.objects import vmi_manifest
from tests.support.fakekube.cluster import FakeCluster, NodeSpec
from tests.support.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
RESOURCE = "qat.intel.com/generic"
NODE = "node01"
NAMESPACE = "default"
TLS = WebhookTlsSettings()
INSUFFICIENT = "0/1 nodes are available: 1 Insufficient qat.intel.com/generic."
GATE_OFF = "QAT feature gate is not enabled in kubevirt-config"
WAIT = 60.0
"""Generous bound for any one step (processes, watches, a loaded machine); never a timing claim."""
TAKEOVER = 15.0 + WAIT
"""The standby takes over within 15 s; the rest is the margin above."""

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def eventually(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    return wait_until(what, check, timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    cluster: FakeCluster
    work: Path
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.work / "kubeconfig"

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("QAT", "PCI_RESOURCE_", "POD_"))}
        log = (self.work / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "handler", *args, "--log-format", "json"],
            cwd=REPO,
            env={**environ, "KUBECONFIG": str(self.kubeconfig), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def controller(self, name: str) -> None:
        self.start(
            name, "controller", "--launcher-image", "qat-handler:0.1.0", "--lease-namespace", TLS.namespace,
            env={"POD_NAME": name},
        )  # fmt: skip

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        env = {"KUBECONFIG": str(self.kubeconfig), "PATH": os.environ.get("PATH", ""), "HOME": str(self.work)}
        return subprocess.run([KUBECTL, *args], input=stdin, env=env, capture_output=True, text=True, timeout=WAIT)

    def apply(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", stdin=vmi_manifest(name, "qat1", NAMESPACE))

    def vmi(self, name: str) -> dict[str, Any]:
        return self.cluster.server.get_object("virtualmachineinstances", NAMESPACE, name) or {}

    def phase(self, name: str) -> str:
        return str((self.vmi(name).get("status") or {}).get("phase") or "")

    def pods_of(self, name: str) -> list[dict[str, Any]]:
        pods = self.cluster.server.objects("pods", NAMESPACE)
        return [p for p in pods if (p["metadata"].get("labels") or {}).get("vmi.kubevirt.io/id") == name]

    def leader(self) -> str:
        lease = self.cluster.server.get_object("leases", TLS.namespace, "qat-handler-controller") or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def running_with_vf(self, name: str) -> str:
        """The VF a Running VMI holds, after checking what a user would check."""
        eventually(f"{name} Running", lambda: self.phase(name) == "Running")
        vmi = self.vmi(name)
        assert vmi["metadata"]["labels"][NODE_LABEL] == NODE and vmi["status"]["nodeName"] == NODE
        assert vmi["metadata"]["finalizers"] == [FINALIZER]
        devices = vmi["metadata"]["annotations"][DEVICES_ANNOTATION]
        assert devices.startswith(f"qat1={RESOURCE}@"), devices
        return str(devices.rpartition("@")[2])

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            print(f"--- {name} (exit {process.returncode})\n{(self.work / f'{name}.log').read_text()[-4000:]}")


def webhook_configuration() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "deploy" / "webhook.yaml").read_text(encoding="utf-8"))
    (config,) = [d for d in docs if d and d["kind"] == "ValidatingWebhookConfiguration"]
    return dict(config)


@contextlib.contextmanager
def stack_on(tmp_path: Path, vfs: int, namespace: str = "default") -> Iterator[Stack]:
    """A fake cluster with one node of ``vfs`` VFs and the kubeconfig kubectl uses; at the end every
    process is stopped and neither the cluster nor its API server may have recorded an error."""
    cluster = FakeCluster(tmp_path / "cluster", nodes=(NodeSpec(NODE, vfs=vfs),)).start()
    cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
    running = Stack(cluster, tmp_path)
    try:
        yield running
    finally:
        running.stop()
        errors = [*cluster.errors, *cluster.server.internal_errors]
        cluster.stop()
        assert not errors, "\n".join(errors)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with stack_on(tmp_path, vfs=2, namespace=NAMESPACE) as running:
        yield running


def start_control_plane(stack: Stack) -> None:
    server = stack.cluster.server
    gate = stack.kubectl("apply", "-f", str(REPO / "deploy" / "examples" / "kubevirt-config.yaml"))
    assert gate.returncode == 0, gate.stderr
    server.put_object(webhook_configuration())
    stack.controller("controller-a")
    eventually("controller-a leading", lambda: stack.leader() == "controller-a")
    stack.controller("controller-b")
    # The leader keeps the webhook's TLS: its Secret, and the configuration's caBundle.
    eventually("the webhook's TLS Secret", lambda: server.get_object("secrets", TLS.namespace, TLS.tls_secret))
    port = free_port()
    server.route_service(TLS.namespace, TLS.service, 443, ("127.0.0.1", port))
    stack.start("webhook", "webhook", "--listen", f"127.0.0.1:{port}", env={"POD_NAMESPACE": TLS.namespace})
    start_agent(stack)


def start_agent(stack: Stack, name: str = "agent") -> None:
    """`qat-handler agent --kubernetes` on the node, on test:///default, leaving guests running when it stops."""
    node = stack.cluster.node(NODE)
    stack.start(
        name, "agent", "--kubernetes", "--node-name", NODE, "--connect", "test:///default",
        "--host-root", str(node.host_root), "--run-dir", str(node.run_dir), "--state-dir", str(node.state_dir),
        "--pod-resources-socket", str(stack.work / "no-kubelet.sock"), "--on-stop", "keep",
    )  # fmt: skip


@contextlib.contextmanager
def controller_and_agent(tmp_path: Path, vfs: int) -> Iterator[Stack]:
    """The gate on, one controller leading, and the node's agent (no webhook)."""
    with stack_on(tmp_path, vfs=vfs) as running:
        gate = running.kubectl("apply", "-f", str(REPO / "deploy" / "examples" / "kubevirt-config.yaml"))
        assert gate.returncode == 0, gate.stderr
        running.controller("controller-a")
        eventually("controller-a leading", lambda: running.leader() == "controller-a")
        start_agent(running)
        yield running


def test_kubectl_apply_to_running_guest_waiting_delete_gate_and_leader_change(stack: Stack) -> None:
    start_control_plane(stack)
    server, node = stack.cluster.server, stack.cluster.node(NODE)

    # apply the README's example VMI: admitted by the webhook, pod created with the resource
    # request, bound, launcher handoff, domain defined on test:///default, VMI Running with its VF
    example = ["apply", "-f", str(REPO / "deploy" / "examples" / "vmi-qat.yaml")]
    applied = eventually("the webhook admitting", lambda: (r := stack.kubectl(*example)).returncode == 0 and r)
    assert "created" in applied.stdout
    assert any(r["request"]["name"] == "vmi-qat" for r in server.admission_reviews)
    (pod,) = eventually("the example's pod", lambda: stack.pods_of("vmi-qat"))
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"][RESOURCE] == resources["limits"][RESOURCE] == "1"
    first_vf = stack.running_with_vf("vmi-qat")
    # A start that went well leaves nothing for `kubectl get events --field-selector type=Warning`.
    selector = "involvedObject.name=vmi-qat,type=Warning"
    warnings = stack.kubectl("get", "events", "--field-selector", selector, "-o", "name")
    assert (warnings.returncode, warnings.stdout) == (0, ""), warnings
    assert first_vf in [str(v) for v in node.vfs] and first_vf not in node.free_vfs()

    # the leader dies mid-way: the standby takes over and makes exactly one pod for the next VMI
    stack.processes["controller-a"].kill()
    assert stack.apply("second").returncode == 0
    eventually("controller-b leading", lambda: stack.leader() == "controller-b", timeout=TAKEOVER)
    second_vf = stack.running_with_vf("second")
    assert second_vf != first_vf and node.free_vfs() == ()

    # one more VMI than there are VFs: it stays Scheduling with the scheduler's message
    assert stack.apply("third").returncode == 0

    def waiting() -> bool:
        status = stack.vmi("third").get("status") or {}
        messages = [c.get("message") for c in status.get("conditions") or []]
        return status.get("phase") == "Scheduling" and INSUFFICIENT in messages

    eventually("third Scheduling with the Insufficient message", waiting)
    stack.cluster.settle()
    assert stack.phase("third") == "Scheduling"

    # delete: the guest is shut down, the pod is gone, the VF is free, and the waiting VMI starts on it
    deleted = stack.kubectl("delete", "vmi", "vmi-qat", "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    eventually("vmi-qat gone (the agent released its finalizer)", lambda: not stack.vmi("vmi-qat"))
    eventually("vmi-qat's pod gone", lambda: not stack.pods_of("vmi-qat"))
    assert stack.running_with_vf("third") == first_vf

    # gate off: apply is denied with the seed's message
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubevirt-config", "namespace": "kubevirt"},
            "data": {"feature-gates": ""},
        }
    )
    denied = eventually("apply denied once the gate is off", lambda: (r := stack.apply("fourth")).returncode and r)
    assert GATE_OFF in denied.stderr
    assert not stack.vmi("fourth")

    for name in ("second", "third"):
        assert len(stack.pods_of(name)) == 1, f"{name} must have exactly one launcher pod"
