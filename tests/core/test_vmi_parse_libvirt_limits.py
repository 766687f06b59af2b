"""Values the generated-input tests (tests/reliability) found the parser accepting although the
domain XML could not carry them or libvirt refuses them: each is now one line naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lxml import etree

from handler.core.domain_xml import render_domain
from handler.core.refusal import Refused
from handler.core.render_settings import RenderSettings
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import load_templates

UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"
BASE: dict[str, Any] = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
    "spec": {
        "domain": {
            "memory": {"guest": "1Gi"},
            "devices": {"disks": [{"name": "root", "serial": "S-1", "bootOrder": 1}]},
            "firmware": {"kernelBoot": {"kernelArgs": "console=ttyS0", "container": {"kernelPath": "/boot/vmlinuz"}}},
        },
        "volumes": [{"name": "root", "hostDisk": {"path": "/img/root.img"}}],
    },
}
KERNEL = ["spec", "domain", "firmware", "kernelBoot"]
DISK0 = ["spec", "domain", "devices", "disks", 0]


def edited(where: list[Any], key: Any, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node = doc
    for step in where:
        node = node[step]
    node[key] = value
    return doc


def second_disk(boot_order: int) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"]["domain"]["devices"]["disks"].append({"name": "data", "bootOrder": boot_order})
    doc["spec"]["volumes"].append({"name": "data", "hostDisk": {"path": "/img/data.img"}})
    return doc


REFUSED = [
    pytest.param(edited(KERNEL, "kernelArgs", "a\x00b"), "spec.domain.firmware.kernelBoot.kernelArgs", id="nul-args"),
    pytest.param(edited(KERNEL, "kernelArgs", "x\x1b[31m"), "spec.domain.firmware.kernelBoot.kernelArgs", id="esc"),
    pytest.param(
        edited([*KERNEL, "container"], "kernelPath", "/boot/vm\nlinuz"),
        "spec.domain.firmware.kernelBoot.container.kernelPath",
        id="newline-kernel-path",
    ),
    pytest.param(
        edited([*KERNEL, "container"], "initrdPath", "/"),
        "spec.domain.firmware.kernelBoot.container.initrdPath",
        id="initrd-slash",
    ),
    pytest.param(edited(["spec", "volumes", 0, "hostDisk"], "path", "//"), "spec.volumes[0].hostDisk.path", id="root"),
    pytest.param(
        edited(["spec", "volumes", 0, "hostDisk"], "path", "/img/\rroot"), "spec.volumes[0].hostDisk.path", id="cr-path"
    ),
    pytest.param(edited(DISK0, "serial", "serial<1>"), "spec.domain.devices.disks[0].serial", id="serial-chars"),
    pytest.param(edited(["spec", "domain", "memory"], "guest", "9" * 25), "spec.domain.memory.guest", id="huge-memory"),
    pytest.param(second_disk(1), "spec.domain.devices.disks[1].bootOrder", id="boot-order-twice"),
    pytest.param(edited(KERNEL, "a\nb", 1), "spec.domain.firmware.kernelBoot['a\\nb']", id="key-with-newline"),
    pytest.param(edited(KERNEL, "x.y", 1), "spec.domain.firmware.kernelBoot['x.y']", id="key-with-dot"),
    pytest.param(edited(["spec", "volumes", 0], "", 1), "spec.volumes[0]['']", id="volume-empty-key"),
    pytest.param(edited(["spec", "volumes", 0], "a\nb", 1), "spec.volumes[0]['a\\nb']", id="volume-key-newline"),
]


@pytest.mark.parametrize(("doc", "subject"), REFUSED)
def test_a_value_libvirt_cannot_take_is_refused_in_one_line(doc: dict[str, Any], subject: str) -> None:
    with pytest.raises(Refused) as caught:
        parse_vmi(doc)
    refusal = caught.value.refusal
    assert refusal.subject == subject
    assert len(refusal.line().splitlines()) == 1


def test_a_disk_name_that_is_no_alias_is_refused() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["domain"]["devices"]["disks"][0]["name"] = "root disk"
    doc["spec"]["volumes"][0]["name"] = "root disk"
    with pytest.raises(Refused) as caught:
        parse_vmi(doc)
    assert caught.value.refusal.subject == "spec.domain.devices.disks[0].name"


def test_the_base_manifest_renders_with_its_strings_intact() -> None:
    """The refusals above are narrow: the ordinary values next to them still reach the XML."""
    xml = render_domain(parse_vmi(BASE), (), RenderSettings(log_dir="/state/logs", templates=load_templates()))
    root = etree.fromstring(xml.encode())
    assert root.findtext("os/cmdline") == "console=ttyS0"
    assert root.findtext("devices/disk/serial") == "S-1"
    assert root.find("devices/disk/boot").get("order") == "1"
