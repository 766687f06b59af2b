"""Bare metal: which names are libvirt networks and which are host bridges, on libvirt's test driver
and a sysfs-shaped host root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.core.attachments import Attachment
from handler.core.refusal import Refused
from handler.core.vmi_parse import parse_vmi
from handler.host.net_bridges import is_host_bridge
from handler.virt.connection import Connection
from handler.virt.guest_network import LibvirtNetworks

UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"
INACTIVE = "<network><name>parked</name><bridge name='virbr9'/></network>"


@pytest.fixture
def connection() -> Iterator[Connection]:
    conn = Connection("test:///default", lambda _event: None)
    parked = conn.get().networkDefineXML(INACTIVE)  # test:///default already has an active 'default'
    yield conn
    parked.undefine()
    conn.close()


def vmi(networks: list[dict[str, Any]]) -> Any:
    return parse_vmi(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
            "spec": {
                "networks": networks,
                "domain": {
                    "memory": {"guest": "1Gi"},
                    "devices": {"interfaces": [{"name": n["name"]} for n in networks]},
                },
            },
        }
    )


def test_pod_is_the_default_network_and_multus_a_host_bridge(connection: Connection, tmp_path: Path) -> None:
    (tmp_path / "sys/class/net/br-storage/bridge").mkdir(parents=True)
    (tmp_path / "sys/class/net/eth0").mkdir(parents=True)  # a NIC, not a bridge
    networks = LibvirtNetworks(connection, "default", lambda name: is_host_bridge(tmp_path, name))
    got = networks.attachments(vmi([{"name": "a", "pod": {}}, {"name": "b", "multus": {"networkName": "br-storage"}}]))
    assert got == (Attachment("a", "network", "default"), Attachment("b", "bridge", "br-storage"))
    with pytest.raises(Refused) as nic:
        networks.attachments(vmi([{"name": "a", "multus": {"networkName": "eth0"}}]))
    assert "neither a libvirt network nor a host bridge" in nic.value.refusal.line()


def test_inactive_or_missing_default_network_is_refused_with_the_fix(connection: Connection, tmp_path: Path) -> None:
    with pytest.raises(Refused) as parked:
        LibvirtNetworks(connection, "parked", lambda _name: False).attachments(vmi([{"name": "a", "pod": {}}]))
    assert parked.value.refusal.line().endswith("fix: virsh net-start parked (and net-autostart parked)")
    with pytest.raises(Refused) as missing:
        LibvirtNetworks(connection, "nat9", lambda _name: False).attachments(vmi([{"name": "a", "pod": {}}]))
    assert "--default-network" in missing.value.refusal.fix
