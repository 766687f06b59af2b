"""A cluster in a box for the Kubernetes-mode agent tests: the fake API server, a simulated
QAT host, a run directory for launcher handoff slots, and libvirt's ``test:///default``.

libvirt's test driver keeps the state of ``test:///default`` for as long as at least one
connection to it is open in the process. The harness holds its own connection for the
whole test, so domains outlive an agent that stops (``--on-stop keep``) and a second agent
sees them, as a restarted DaemonSet pod would; the harness also uses it to look at domains.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
from kubernetes import client

from handler.core.backoff import Backoff
from handler.core.bdf import Bdf
from handler.core.handoff import HANDOFF_FILE, REPORT_FILE, Handoff, handoff_to_json
from handler.core.kube_status import FINALIZER
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.core.vmi import NODE_LABEL
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.kube.informer import WatchSettings
from handler.kube.launcher_pods import CREATED_BY_LABEL
from handler.kube.node import KubeNode
from handler.ops.atomic_file import write_atomically
from handler.settings import AgentSettings
from handler.virt.event_loop import ensure_event_loop
from tests.support.fakekube import FakeApiServer
from tests.support.polling import eventually

NODE = "node01"
GROUP, VERSION, VMIS = "kubevirt.io", "v1", "virtualmachineinstances"
QAT_RESOURCE = "qat.intel.com/generic"
HOST_KEPT_VF = 0
"""Index of the one VF the simulated host keeps on its QAT host driver (c6xxvf), not vfio-pci."""
WATCH = WatchSettings(watch_seconds=5, inactivity_seconds=5, backoff=Backoff(0.2, 1.0))
_namespaces = itertools.count(1)


@dataclass
class Cluster:
    server: FakeApiServer
    work: Path
    libvirt_conn: libvirt.virConnect
    namespace: str = field(default_factory=lambda: f"t{next(_namespaces)}")
    nodes: list[KubeNode] = field(default_factory=list)
    lifecycle: list[tuple[str, int]] = field(default_factory=list)
    """(domain name, libvirt lifecycle event) seen on the harness's own connection."""

    def __post_init__(self) -> None:
        spec = SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=8, vf_drivers=((HOST_KEPT_VF, "c6xxvf"),))
        self.vfs = build_simulated_host(self.host_root, SimulatedHost(pfs=(spec,)))
        self.api = self.server.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self._callback = self.libvirt_conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )

    # -- places --------------------------------------------------------------------------
    @property
    def host_root(self) -> Path:
        return self.work / "host"

    @property
    def run_dir(self) -> Path:
        return self.work / "run"

    @property
    def state_dir(self) -> Path:
        return self.work / "state"

    def slot_dir(self, pod_uid: str) -> Path:
        return self.run_dir / "pods" / pod_uid

    @property
    def usable_vfs(self) -> tuple[Bdf, ...]:
        return tuple(bdf for index, bdf in enumerate(self.vfs) if index != HOST_KEPT_VF)

    # -- the agent -----------------------------------------------------------------------
    def settings(self) -> AgentSettings:
        return AgentSettings(
            connect="test:///default",
            state_dir=self.state_dir,
            run_dir=self.run_dir,
            host_root=self.host_root,
            render=RenderSettings(
                log_dir=str(self.state_dir / "logs"),
                files_dir=str(self.state_dir / "guests"),
                templates=load_templates(),
            ),
        )

    def start_agent(self) -> KubeNode:
        node = KubeNode(self.settings(), self.api, NODE, FreshDeviceChecks(self.host_root), watch_settings=WATCH)
        self.nodes.append(node)
        # start() waits for the first list without end, as the agent should; a test must not.
        starting = threading.Thread(target=node.start, name="agent-start", daemon=True)
        starting.start()
        starting.join(timeout=15)
        assert not starting.is_alive(), "the agent did not finish starting (first list or libvirt)"
        eventually(lambda: node.wait_synced(0.2), what="the agent's first sync")
        return node

    def stop_agent(self, node: KubeNode) -> None:
        node.shutdown(StopPolicy.KEEP)
        self.nodes.remove(node)

    # -- cluster objects -----------------------------------------------------------------
    def create_vmi(self, name: str, node: str | None = NODE, qats: int = 1, grace: int = 30) -> dict[str, Any]:
        labels = {NODE_LABEL: node} if node else {}
        devices = [{"name": f"qat{i + 1}", "deviceName": QAT_RESOURCE} for i in range(qats)]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "domain": {"memory": {"guest": "1Gi"}, "devices": {"qats": devices}},
            },
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, VMIS, body
        )
        return created

    def label_vmi(self, name: str, node: str) -> None:
        patch = {"metadata": {"labels": {NODE_LABEL: node}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, VMIS, name, patch)

    def delete_vmi(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, VMIS, name)

    def create_pod(self, vmi: dict[str, Any], node: str = NODE, created_by: str | None = None) -> str:
        """A launcher pod for ``vmi`` (as virt-controller makes it); returns the pod UID."""
        name = vmi["metadata"]["name"]
        body = {
            "metadata": {
                "name": f"virt-launcher-{name}-{len(self.core.list_namespaced_pod(self.namespace).items)}",
                "labels": {CREATED_BY_LABEL: created_by or vmi["metadata"]["uid"]},
            },
            "spec": {"nodeName": node, "containers": [{"name": "compute", "image": "qat-handler"}]},
        }
        return str(self.core.create_namespaced_pod(self.namespace, body).metadata.uid)

    def write_handoff(
        self,
        pod_uid: str,
        vmi: dict[str, Any],
        env: dict[str, str],
        claimed_pod_uid: str | None = None,
        stop_requested: bool = False,
    ) -> Path:
        """What the launcher of pod ``pod_uid`` writes into its slot."""
        meta = vmi["metadata"]
        handoff = Handoff(
            namespace=meta["namespace"],
            name=meta["name"],
            vmi_uid=meta["uid"],
            pod_uid=claimed_pod_uid or pod_uid,
            env=tuple(sorted(env.items())),
            stop_requested=stop_requested,
        )
        slot = self.slot_dir(pod_uid)
        slot.mkdir(parents=True, exist_ok=True)
        write_atomically(slot / HANDOFF_FILE, json.dumps(handoff_to_json(handoff)).encode(), mode=0o644)
        return slot

    def launch(self, vmi: dict[str, Any], bdf: Bdf) -> str:
        """A launcher pod for ``vmi`` with one VF, and its handoff; returns the pod UID."""
        pod_uid = self.create_pod(vmi)
        self.write_handoff(pod_uid, vmi, {"QAT0": str(bdf)})
        return pod_uid

    def report(self, pod_uid: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.slot_dir(pod_uid) / REPORT_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data

    def set_configmap_gates(self, gates: str) -> None:
        body = {"metadata": {"name": "kubevirt-config"}, "data": {"feature-gates": gates}}
        if self.server.get_object("configmaps", "kubevirt", "kubevirt-config") is None:
            self.core.create_namespaced_config_map("kubevirt", body)
        else:
            self.core.patch_namespaced_config_map("kubevirt-config", "kubevirt", {"data": body["data"]})

    def set_kubevirt_gates(self, gates: list[str]) -> None:
        spec = {"configuration": {"developerConfiguration": {"featureGates": gates}}}
        if self.server.get_object("kubevirts", "kubevirt", "kubevirt", group=GROUP) is None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "KubeVirt",
                "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                "spec": spec,
            }
            self.custom.create_namespaced_custom_object(GROUP, VERSION, "kubevirt", "kubevirts", body)
        else:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, "kubevirt", "kubevirts", "kubevirt", {"spec": spec}
            )

    # -- looking -------------------------------------------------------------------------
    def vmi(self, name: str) -> dict[str, Any] | None:
        return self.server.get_object(VMIS, self.namespace, name, group=GROUP)

    def phase(self, name: str) -> str | None:
        obj = self.vmi(name)
        return ((obj or {}).get("status") or {}).get("phase")

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        conditions = ((self.vmi(name) or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == kind), None)

    def message(self, name: str, kind: str) -> str:
        condition = self.condition(name, kind)
        assert condition is not None, f"{name} has no {kind} condition"
        return str(condition["message"])

    def annotation(self, name: str, key: str) -> str | None:
        return (((self.vmi(name) or {}).get("metadata") or {}).get("annotations") or {}).get(key)

    def synchronized_reason(self, name: str) -> str | None:
        """The reason of Synchronized=False, or None while it is True or absent."""
        condition = self.condition(name, "Synchronized")
        return condition["reason"] if condition and condition["status"] == "False" else None

    def finalizers(self, name: str) -> list[str]:
        return list(((self.vmi(name) or {}).get("metadata") or {}).get("finalizers") or [])

    def has_finalizer(self, name: str) -> bool:
        return FINALIZER in self.finalizers(name)

    def events(self, uid: str) -> list[dict[str, Any]]:
        every = self.server.objects("events", self.namespace, group="")
        return [e for e in every if (e.get("involvedObject") or {}).get("uid") == uid]

    def events_with(self, uid: str, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.events(uid) if e["reason"] == reason]

    def event_reasons(self, uid: str) -> list[str]:
        return sorted(e["reason"] for e in self.events(uid))

    def domain_name(self, name: str) -> str:
        return f"{self.namespace}_{name}"

    def domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.libvirt_conn.lookupByName(self.domain_name(name))
        except libvirt.libvirtError:
            return None

    def must_domain(self, name: str) -> libvirt.virDomain:
        dom = self.domain(name)
        assert dom is not None, f"no domain {self.domain_name(name)}"
        return dom

    def domain_running(self, name: str) -> bool:
        dom = self.domain(name)
        return dom is not None and dom.isActive() == 1

    def vmi_patches(self) -> list[Any]:
        return self.server.requests("PATCH", rf"/namespaces/{self.namespace}/{VMIS}/")

    # -- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        for node in list(self.nodes):
            self.stop_agent(node)
        for dom in self.libvirt_conn.listAllDomains(0):
            if dom.name().startswith(f"{self.namespace}_"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        self.libvirt_conn.domainEventDeregisterAny(self._callback)

    def _on_lifecycle(self, _conn: object, dom: libvirt.virDomain, event: int, _detail: int, _opaque: object) -> None:
        self.lifecycle.append((dom.name(), event))


def open_test_hypervisor() -> libvirt.virConnect:
    """The harness's own connection; the event loop must exist before it opens."""
    ensure_event_loop()
    return libvirt.open("test:///default")
