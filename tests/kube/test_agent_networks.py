"""Kubernetes networking end to end on the fake API server: a multus network becomes the host
bridge of its NetworkAttachmentDefinition; the pod network is refused with the supported way."""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

from handler.core.vmi import NODE_LABEL
from handler.core.vmi_networks import stable_mac
from handler.kube.status_sink import version_of
from tests.kube.agent_harness import GROUP, NODE, QAT_RESOURCE, VERSION, VMIS, Cluster, eventually

NAD = ("k8s.cni.cncf.io", "v1", "network-attachment-definitions")


def create_nad(cluster: Cluster, name: str, config: dict[str, Any]) -> None:
    body = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": {"config": json.dumps(config)},
    }
    cluster.custom.create_namespaced_custom_object(NAD[0], NAD[1], cluster.namespace, NAD[2], body)


def create_networked_vmi(cluster: Cluster, name: str, network: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": {NODE_LABEL: NODE}},
        "spec": {
            "networks": [{"name": "net0", **network}],
            "domain": {
                "memory": {"guest": "1Gi"},
                "devices": {
                    "qats": [{"name": "qat1", "deviceName": QAT_RESOURCE}],
                    "interfaces": [{"name": "net0", "bridge": {}}],
                },
            },
        },
    }
    created: dict[str, Any] = cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, VMIS, body
    )
    return created


def test_multus_network_joins_the_bridge_of_its_attachment_definition(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    create_nad(cluster, "storage", {"cniVersion": "0.3.1", "type": "bridge", "bridge": "br-qat", "ipam": {}})
    create_nad(cluster, "elsewhere", {"cniVersion": "0.3.1", "type": "bridge", "bridge": "br-other"})
    (cluster.host_root / "sys/class/net/br-qat/bridge").mkdir(parents=True)
    cluster.start_agent()
    absent = create_networked_vmi(cluster, "absent", {"multus": {"networkName": "elsewhere"}})
    cluster.launch(absent, cluster.usable_vfs[1])
    vmi = create_networked_vmi(cluster, "bridged", {"multus": {"networkName": "storage"}})
    cluster.launch(vmi, cluster.usable_vfs[0])

    eventually(lambda: cluster.phase("bridged") == "Running", what="Running")
    root = etree.fromstring(cluster.must_domain("bridged").XMLDesc(0).encode())
    (nic,) = root.findall("devices/interface")
    mac = stable_mac(vmi["metadata"]["uid"], "net0")
    assert (nic.get("type"), nic.find("source").get("bridge"), nic.find("mac").get("address")) == (
        "bridge",
        "br-qat",
        mac,
    )
    served = cluster.vmi("bridged") or {}
    assert served["status"]["interfaces"] == [{"name": "net0", "mac": mac, "ipAddress": "", "ipAddresses": []}]
    eventually(lambda: cluster.synchronized_reason("absent") == "NetworkUnavailable", what="absent bridge refused")
    assert "whose bridge 'br-other' does not exist on this node" in cluster.message("absent", "Synchronized")
    assert cluster.domain("absent") is None


def test_pod_network_is_refused_pointing_to_multus(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = create_networked_vmi(cluster, "podnet", {"pod": {}})
    cluster.launch(vmi, cluster.usable_vfs[0])

    eventually(lambda: cluster.synchronized_reason("podnet") == "NetworkUnsupported", what="NetworkUnsupported")
    message = cluster.message("podnet", "Synchronized")
    assert message.startswith("spec.networks[0].pod cannot be given in Kubernetes")
    assert "fix: use a multus network" in message and "\n" not in message
    assert cluster.domain("podnet") is None


def test_attachment_definition_that_is_not_a_bridge_or_is_missing_is_refused(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    create_nad(cluster, "macvtap", {"cniVersion": "0.3.1", "plugins": [{"type": "macvlan", "master": "eth0"}]})
    cluster.start_agent()
    wrong = create_networked_vmi(cluster, "wrong", {"multus": {"networkName": "macvtap"}})
    missing = create_networked_vmi(cluster, "missing", {"multus": {"networkName": "other-ns/nothing"}})
    cluster.launch(wrong, cluster.usable_vfs[0])
    cluster.launch(missing, cluster.usable_vfs[1])

    eventually(lambda: cluster.synchronized_reason("wrong") == "NetworkUnsupported", what="wrong type refused")
    assert "type macvlan, not bridge" in cluster.message("wrong", "Synchronized")
    eventually(lambda: cluster.synchronized_reason("missing") == "NetworkUnavailable", what="missing NAD refused")
    assert "other-ns/nothing, which does not exist" in cluster.message("missing", "Synchronized")
    assert cluster.domain("wrong") is None and cluster.domain("missing") is None


def test_status_goes_back_in_the_version_the_vmi_was_read_in() -> None:
    assert version_of({"apiVersion": "kubevirt.io/v1alpha3"}) == "v1alpha3"
    assert version_of({"apiVersion": "kubevirt.io/v1"}) == "v1"
    assert version_of({"apiVersion": "kubevirt.io/v2"}) == "v1", "never a version the agent does not read"
    assert version_of({}) == "v1"


def test_a_vmi_created_as_v1alpha3_runs_and_reads_back_with_status_in_both_versions(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    body = {
        "apiVersion": f"{GROUP}/v1alpha3",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "old-style", "namespace": cluster.namespace, "labels": {NODE_LABEL: NODE}},
        "spec": {
            "domain": {"memory": {"guest": "1Gi"}, "devices": {"qats": [{"name": "q", "deviceName": QAT_RESOURCE}]}}
        },
    }
    vmi = cluster.custom.create_namespaced_custom_object(GROUP, "v1alpha3", cluster.namespace, VMIS, body)
    cluster.launch(vmi, cluster.usable_vfs[0])

    eventually(lambda: cluster.phase("old-style") == "Running", what="Running")
    old = cluster.custom.get_namespaced_custom_object(GROUP, "v1alpha3", cluster.namespace, VMIS, "old-style")
    assert old["apiVersion"] == f"{GROUP}/v1alpha3" and old["status"]["phase"] == "Running"
    patched = {request.path.split("/")[3] for request in cluster.server.requests("PATCH", rf"/{VMIS}/old-style")}
    assert patched == {VERSION}, "the agent reads v1, so it writes v1"
