"""The bare-metal agent with networked VMIs on libvirt's test driver: a NIC on the default
libvirt network and one on a host bridge are defined as such; a network the host lacks
refuses only its VMI."""

from __future__ import annotations

import yaml
from lxml import etree

from handler.core.vmi_networks import stable_mac
from tests.agent.test_reconciler_baremetal import (  # noqa: F401  (fixtures)
    World,
    keeper,
    manifest,
    out_of_sync,
    world,
)

UID = "6a1f0c9e-0041-4d6b-9e51-000000000041"


def write_networked(world: World, name: str, networks: list[dict[str, object]], uid: str = "") -> None:  # noqa: F811
    doc = manifest(name, world.namespace)
    if uid:
        doc["metadata"]["uid"] = uid
    doc["spec"]["networks"] = networks
    doc["spec"]["domain"]["devices"]["interfaces"] = [{"name": n["name"]} for n in networks]
    world.write(f"{name}.env", "QAT0=0000:3d:01.0\n" if name == "nics" else "QAT0=0000:3d:01.1\n")
    world.write(f"{name}.yaml", yaml.safe_dump(doc))


def test_nics_plug_into_the_default_network_and_a_host_bridge(world: World) -> None:  # noqa: F811
    (world.host_root / "sys/class/net/br-storage/bridge").mkdir(parents=True)
    write_networked(
        world,
        "nics",
        [{"name": "default", "pod": {}}, {"name": "storage", "multus": {"networkName": "br-storage"}}],
        uid=UID,
    )
    write_networked(world, "lost", [{"name": "x", "multus": {"networkName": "br-missing"}}])
    world.start_node()

    status = world.wait_phase("nics", "Running")
    assert [(i["name"], i["mac"]) for i in status["interfaces"]] == [
        ("default", stable_mac(UID, "default")),
        ("storage", stable_mac(UID, "storage")),
    ]
    dom = world.lookup("nics")
    assert dom is not None
    nics = etree.fromstring(dom.XMLDesc(0).encode()).findall("devices/interface")
    assert [(n.get("type"), dict(n.find("source").attrib)) for n in nics] == [  # type: ignore[union-attr]
        ("network", {"network": "default"}),
        ("bridge", {"bridge": "br-storage"}),
    ]

    lost = world.wait_status("lost", "NetworkUnavailable", out_of_sync("NetworkUnavailable"))
    message = next(c["message"] for c in lost["conditions"] if c["type"] == "Synchronized")
    assert message.startswith("spec.networks[0].multus.networkName 'br-missing' is neither a libvirt network")
    assert world.lookup("lost") is None
