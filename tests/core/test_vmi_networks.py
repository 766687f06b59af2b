"""spec.networks + spec.domain.devices.interfaces in, Interfaces (or a refusal naming the field) out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from handler.core.attachments import Attachment, resolve_on_host
from handler.core.bdf import Bdf
from handler.core.refusal import Refused
from handler.core.vmi_networks import Interface, Network, stable_mac
from handler.core.vmi_parse import parse_vmi

UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"
OTHER_UID = "6a1f0c9e-0001-4d6b-9e51-000000000002"
POD = {"name": "default", "pod": {}}
BR = {"name": "storage", "multus": {"networkName": "br-storage"}}


def doc(interfaces: list[Any], networks: list[Any], uid: str = UID) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns", "uid": uid},
        "spec": {
            "networks": copy.deepcopy(networks),
            "domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": copy.deepcopy(interfaces)}},
        },
    }


def test_pod_and_multus_networks_are_read_in_order() -> None:
    vmi = parse_vmi(
        doc(
            [
                {"name": "default", "masquerade": {}},
                {"name": "storage", "bridge": {}, "model": "e1000e", "macAddress": "02:AA:bb:cc:dd:01"},
            ],
            [BR, POD],
        )
    )
    assert vmi.interfaces == (
        Interface(
            "default",
            Network("default", "pod", "", "spec.networks[1]"),
            "masquerade",
            "virtio",
            stable_mac(UID, "default"),
            None,
            "spec.domain.devices.interfaces[0]",
        ),
        Interface(
            "storage",
            Network("storage", "multus", "br-storage", "spec.networks[0]"),
            "bridge",
            "e1000e",
            "02:aa:bb:cc:dd:01",
            None,
            "spec.domain.devices.interfaces[1]",
        ),
    )


def test_binding_defaults_to_bridge_and_pci_address_is_normalised() -> None:
    vmi = parse_vmi(doc([{"name": "default", "pciAddress": "81:01.0"}], [POD]))
    assert vmi.interfaces[0].binding == "bridge"
    assert vmi.interfaces[0].pci_address == Bdf(0, 0x81, 1, 0)


def test_derived_mac_is_stable_unicast_and_locally_administered() -> None:
    first = parse_vmi(doc([{"name": "default"}], [POD])).interfaces[0].mac
    again = parse_vmi(doc([{"name": "default"}], [POD])).interfaces[0].mac
    other_vmi = parse_vmi(doc([{"name": "default"}], [POD], OTHER_UID)).interfaces[0].mac
    assert first == again
    assert first != other_vmi
    assert first != stable_mac(UID, "other")
    octet = int(first[:2], 16)
    assert octet & 0x02, "locally administered"
    assert not octet & 0x01, "unicast"
    for uid_suffix in range(64):  # the bits hold whatever the hash gives
        mac = stable_mac(f"6a1f0c9e-0001-4d6b-9e51-0000000000{uid_suffix:02x}", "eth")
        assert int(mac[:2], 16) & 0x03 == 0x02


REFUSED: list[Any] = [
    pytest.param([{"name": "x"}], [POD], "spec.domain.devices.interfaces[0].name", id="no-such-network"),
    pytest.param([], [POD], "spec.networks[0].name", id="network-without-interface"),
    pytest.param([{"name": "default"}, {"name": "default"}], [POD], "interfaces[1].name", id="twice"),
    pytest.param([{"name": "default"}], [POD, POD], "spec.networks[1].name", id="network-twice"),
    pytest.param([{"name": "default", "sriov": {}}], [POD], "interfaces[0].sriov", id="sriov"),
    pytest.param([{"name": "default", "slirp": {}}], [POD], "interfaces[0].slirp", id="slirp"),
    pytest.param([{"name": "default", "ports": [{"port": 80}]}], [POD], "interfaces[0].ports", id="ports"),
    pytest.param([{"name": "default", "bootOrder": 1}], [POD], "interfaces[0].bootOrder", id="boot-order"),
    pytest.param([{"name": "default", "model": "rtl8139"}], [POD], "interfaces[0].model", id="model"),
    pytest.param([{"name": "default", "bridge": {}, "masquerade": {}}], [POD], "interfaces[0]", id="two-bindings"),
    pytest.param([{"name": "storage", "masquerade": {}}], [BR], "interfaces[0].masquerade", id="masq-multus"),
    pytest.param([{"name": "default", "macAddress": "02:00:00"}], [POD], "interfaces[0].macAddress", id="mac-short"),
    pytest.param([{"name": "default", "macAddress": "03:00:00:00:00:01"}], [POD], "macAddress", id="mac-multicast"),
    pytest.param(
        [
            {"name": "default", "macAddress": "02:00:00:00:00:01"},
            {"name": "storage", "macAddress": "02-00-00-00-00-01"},
        ],
        [POD, BR],
        "interfaces[1].macAddress",
        id="mac-twice",
    ),
    pytest.param([{"name": "default", "pciAddress": "zz"}], [POD], "interfaces[0].pciAddress", id="pci"),
    pytest.param([{"name": "default"}], [{"name": "default"}], "spec.networks[0]", id="no-source"),
    pytest.param([{"name": "default"}], [{**POD, **BR, "name": "default"}], "spec.networks[0]", id="two-sources"),
    pytest.param(
        [{"name": "default"}],
        [{"name": "default", "pod": {"vmNetworkCIDR": "10.0.0.0/24"}}],
        "pod.vmNetworkCIDR",
        id="cidr",
    ),
    pytest.param([{"name": "s"}], [{"name": "s", "multus": {}}], "multus.networkName", id="multus-no-name"),
    pytest.param(
        [{"name": "s"}],
        [{"name": "s", "multus": {"networkName": "b", "default": True}}],
        "multus.default",
        id="multus-dflt",
    ),
    pytest.param([{"name": "s"}], [{"name": "s", "hostNetwork": {}}], "spec.networks[0].hostNetwork", id="unknown-src"),
]


@pytest.mark.parametrize(("interfaces", "networks", "subject_end"), REFUSED)
def test_bad_networking_is_refused_naming_the_field(
    interfaces: list[Any], networks: list[Any], subject_end: str
) -> None:
    with pytest.raises(Refused) as caught:
        parse_vmi(doc(interfaces, networks))
    assert caught.value.refusal.subject.endswith(subject_end), caught.value.refusal.line()
    assert "fix:" in caught.value.refusal.line()


NETWORKS = {"default": True, "qat-backend": True, "stopped": False}
BRIDGES = {"br-storage"}


def resolve(interfaces: list[Any], networks: list[Any], default_network: str = "default") -> Any:
    return resolve_on_host(parse_vmi(doc(interfaces, networks)), default_network, NETWORKS.get, BRIDGES.__contains__)


def test_host_resolution_picks_libvirt_network_then_bridge() -> None:
    backend = {"name": "backend", "multus": {"networkName": "qat-backend"}}
    got = resolve([{"name": "default"}, {"name": "storage"}, {"name": "backend"}], [POD, BR, backend])
    assert got == (
        Attachment("default", "network", "default"),
        Attachment("storage", "bridge", "br-storage"),
        Attachment("backend", "network", "qat-backend"),
    )


@pytest.mark.parametrize(
    ("networks", "default_network", "subject", "fix"),
    [
        ([POD], "stopped", "spec.networks[0]", "virsh net-start stopped"),
        ([POD], "nat0", "spec.networks[0].pod", "--default-network"),
        (
            [{"name": "default", "multus": {"networkName": "br-x"}}],
            "default",
            "multus.networkName",
            "create the bridge",
        ),
    ],
)
def test_host_resolution_refuses_naming_the_network(
    networks: list[Any], default_network: str, subject: str, fix: str
) -> None:
    with pytest.raises(Refused) as caught:
        resolve([{"name": "default"}], networks, default_network)
    assert caught.value.refusal.reason == "NetworkUnavailable"
    assert caught.value.refusal.subject.endswith(subject)
    assert fix in caught.value.refusal.fix
