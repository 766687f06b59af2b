"""What a generated input must come out as: a domain that libvirt accepts and that carries every
user string exactly, or one line that names the field at fault."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from handler.core.device_env import AssignedDevice
from handler.core.domain_identity import read_identity
from handler.core.domain_xml import ALIAS_PREFIX, identity_of
from handler.core.refusal import Refusal
from handler.core.render_settings import RenderSettings
from handler.core.vmi import VMI

DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")


@cache
def domain_schema() -> etree.RelaxNG:
    """libvirt's own domain schema, loaded once (it takes a moment)."""
    return etree.RelaxNG(etree.parse(str(DOMAIN_RNG)))


def check_domain(xml: str, vmi: VMI, devices: Sequence[AssignedDevice], settings: RenderSettings) -> None:
    """Assert the rendered XML is schema-valid and carries the VMI's strings unchanged."""
    root = etree.fromstring(xml.encode())
    schema = domain_schema()
    if not schema.validate(root):
        errors = "; ".join(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise AssertionError(f"not valid against {DOMAIN_RNG.name}: {errors}\n{xml}")
    check_strings(root, vmi, devices, settings)


def check_strings(root: etree._Element, vmi: VMI, devices: Sequence[AssignedDevice], settings: RenderSettings) -> None:
    """Every user string round-trips: parsed back out of the XML it equals what the VMI holds."""
    assert root.findtext("name") == vmi.domain_name
    assert root.findtext("uuid") == vmi.uid
    boot = vmi.kernel_boot
    assert root.findtext("os/kernel") == (boot.kernel if boot else None)
    assert root.findtext("os/initrd") == (boot.initrd if boot else None)
    assert (root.findtext("os/cmdline") or "") == (boot.cmdline if boot else "")
    disks = root.findall("devices/disk")
    assert len(disks) == len(vmi.disks)
    for element, disk in zip(disks, vmi.disks, strict=True):
        assert element.find("source").get("file") == disk.path
        assert element.findtext("serial") == disk.serial
        assert element.find("alias").get("name") == f"ua-disk-{disk.name}"
    aliases = [a.get("name") for a in root.iterfind("devices/hostdev/alias")]
    assert aliases == [ALIAS_PREFIX + device.name for device in devices]
    identity = read_identity(etree.tostring(root))
    assert identity == identity_of(vmi, devices, settings), "the metadata does not read back as written"
    for source in root.iterfind("devices/*/source[@path]"):
        log = Path(source.get("path"))
        assert os.path.normpath(log.parent) == os.path.normpath(settings.log_dir), f"{log} is outside the log dir"


def check_defines(conn: libvirt.virConnect, xml: str, vmi: VMI, devices: Sequence[AssignedDevice]) -> None:
    """Define on the test driver, read libvirt's copy back, compare, undefine."""
    dom = conn.defineXML(xml)
    try:
        text = dom.XMLDesc(0)
    finally:
        dom.undefine()
    back = etree.fromstring(text.encode())
    assert back.findtext("name") == vmi.domain_name
    boot = vmi.kernel_boot
    assert (back.findtext("os/cmdline") or "") == (boot.cmdline if boot else ""), text
    assert [d.find("source").get("file") for d in back.findall("devices/disk")] == [d.path for d in vmi.disks], text
    assert [d.findtext("serial") for d in back.findall("devices/disk")] == [d.serial for d in vmi.disks], text
    identity = read_identity(etree.tostring(back))
    assert identity is not None and identity.uid == vmi.uid and identity.devices == tuple(devices)


def check_refusal(refusal: Refusal, document: Any, env_text: str | None, filenames: Sequence[str]) -> str:
    """One line, naming a place that exists in the input (or a key missing from an object that
    exists). Returns the subject with list indexes folded, for the summary."""
    line = refusal.line()
    assert len(line.splitlines()) == 1 and "\n" not in line and "\r" not in line, f"not one line: {line!r}"
    subject = refusal.subject
    if any(subject == name or subject.startswith(f"{name} line ") for name in filenames):
        return subject.split(" line ")[0].rsplit(".", 1)[-1] + "-file"
    if refusal.reason == "DeviceEnvInvalid":
        assert env_text is not None or subject.startswith(("PCI_RESOURCE_", "QAT")), line
        variables = [part.strip() for part in subject.split(",")]
        for variable in variables:
            assert variable.startswith(("PCI_RESOURCE_", "QAT")), f"names no variable: {line}"
        return "env"
    steps = _steps(subject)
    assert steps, f"names no field: {line}"
    assert _resolves(document, steps), f"{subject!r} is not a place in the manifest: {line}"
    return ".".join(s if isinstance(s, str) and s.isidentifier() else "[]" for s in steps)


_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_$-]*)|\[([^\[\]]+|'.*?'|\".*?\")\]")


def _steps(subject: str) -> list[Any]:
    """``spec.a[0]['odd key']`` -> ["spec", "a", 0, "odd key"]; [] when it is not such a path."""
    if subject == "manifest":
        return ["manifest"]
    steps: list[Any] = []
    position = 0
    while position < len(subject):
        match = _STEP.match(subject, position)
        if match is None:
            return []
        name, bracketed = match.groups()
        steps.append(name if name is not None else ast.literal_eval(bracketed))
        position = match.end()
    return steps


def _resolves(document: Any, steps: list[str | int]) -> bool:
    """The path exists, or it runs into a key that is missing (from an object that exists or
    that may be left out): it never runs through a value that is not an object or a list."""
    if steps == ["manifest"]:
        return True
    node = document
    for step in steps:
        if isinstance(step, int) and not isinstance(node, dict):
            if not isinstance(node, list) or step >= len(node):
                return False
            node = node[step]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            return node is None or isinstance(node, dict)
    return True
