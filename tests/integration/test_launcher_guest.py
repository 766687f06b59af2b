"""Issue 4 in Kubernetes mode, on a real guest: SIGTERM to the launcher pod's process shuts
the guest down through the agent, and the launcher holds on until the guest is off.

The agent (in-process KubeNode) runs against the fake API server and the real libvirtd on
qemu:///system with TCG; the launcher is the real ``qat-handler launcher`` process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import libvirt
import pytest
from kubernetes import client

from handler.core.backoff import Backoff
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.kube.informer import WatchSettings
from handler.kube.node import KubeNode
from handler.settings import AgentSettings
from tests.integration.agent_harness import NAMESPACE, Workspace, domain_name, wait_until
from tests.support.fakekube import FakeApiServer
from tests.support.guest_image import BOOT_MARKER, SHUTDOWN_MARKER, ensure_guest_image, read_serial

pytestmark = [pytest.mark.libvirtd, pytest.mark.guest]
NODE = "node01"
GRACE = 30


@pytest.fixture
def kube(libvirt_conn: libvirt.virConnect) -> Iterator[tuple[FakeApiServer, KubeNode, Workspace]]:
    work = Workspace.create()
    with FakeApiServer() as api:
        settings = AgentSettings(
            connect="qemu:///system",
            state_dir=work.state_dir,
            run_dir=work.root / "run",
            render=RenderSettings(
                domain_type="qemu",
                log_dir=str(work.state_dir / "logs"),
                owner=f"node/{NODE}",
                templates=load_templates(),
            ),
            acpi_resend_seconds=2.0,
        )
        node = KubeNode(settings, api.api_client(), NODE, watch_settings=WatchSettings(5, 5, Backoff(0.2, 1.0)))
        node.start()
        try:
            yield api, node, work
        finally:
            node.shutdown(StopPolicy.KEEP)
            for dom in libvirt_conn.listAllDomains():
                if dom.name().startswith(f"{NAMESPACE}_"):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
            shutil.rmtree(work.root, ignore_errors=True)


def test_sigterm_to_the_launcher_shuts_the_guest_down_and_holds_the_pod(
    kube: tuple[FakeApiServer, KubeNode, Workspace], libvirt_conn: libvirt.virConnect
) -> None:
    api, _node, work = kube
    image = ensure_guest_image("acpi")
    custom = client.CustomObjectsApi(api.api_client())
    core = client.CoreV1Api(api.api_client())
    vmi = custom.create_namespaced_custom_object(
        "kubevirt.io",
        "v1",
        NAMESPACE,
        "virtualmachineinstances",
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "launched", "labels": {"kubevirt.io/nodeName": NODE}},
            "spec": {
                "terminationGracePeriodSeconds": GRACE,
                "domain": {
                    "memory": {"guest": "256Mi"},
                    "firmware": {
                        "kernelBoot": {
                            "kernelArgs": image.cmdline,
                            "container": {"kernelPath": str(image.kernel), "initrdPath": str(image.initrd)},
                        }
                    },
                },
            },
        },
    )
    uid = vmi["metadata"]["uid"]
    pod = core.create_namespaced_pod(
        NAMESPACE,
        {
            "metadata": {"name": "virt-launcher-launched", "labels": {"kubevirt.io/created-by": uid}},
            "spec": {"nodeName": NODE, "containers": [{"name": "compute", "image": "launcher"}]},
        },
    )
    slot = work.root / "run" / "pods" / pod.metadata.uid
    slot.mkdir(parents=True)  # kubelet makes the slot for subPathExpr
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handler",
            "launcher",
            "--run-dir",
            str(slot),
            "--namespace",
            NAMESPACE,
            "--name",
            "launched",
            "--uid",
            uid,
            "--pod-uid",
            pod.metadata.uid,
            "--grace-seconds",
            str(GRACE),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("QAT", "PCI_RESOURCE_"))},
    )
    serial = work.state_dir / "logs" / f"{domain_name('launched')}.serial.log"
    try:
        wait_until("boot marker", lambda: BOOT_MARKER in read_serial(serial), timeout=90)
        vmi_status = lambda: (api.get_object("virtualmachineinstances", NAMESPACE, "launched") or {}).get("status", {})  # noqa: E731
        assert vmi_status().get("phase") == "Running"
        sent = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        launcher.send_signal(signal.SIGTERM)  # a second SIGTERM must not cut the wait short
        time.sleep(0.2)
        assert launcher.poll() is None or not guest_running(libvirt_conn)
        output, _ = launcher.communicate(timeout=GRACE + 20)
        took = time.monotonic() - sent
        assert launcher.returncode == 0, output
        assert not guest_running(libvirt_conn)  # off, and undefined: the pod's VFs are free again
        assert SHUTDOWN_MARKER in read_serial(serial)
        assert took < GRACE / 2, f"guest took {took:.1f} s to stop"
        wait_until("phase Succeeded", lambda: vmi_status().get("phase") == "Succeeded", timeout=10)
        report = json.loads((slot / "agent.json").read_text())
        assert report["guestOff"] is True and report["phase"] == "Succeeded"
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(line["event"] == "guest is off" for line in lines)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()


def guest_running(conn: libvirt.virConnect) -> bool:
    return any(d.name() == domain_name("launched") and d.isActive() for d in conn.listAllDomains())
