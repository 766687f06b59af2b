"""Golden domain XML: a VMI manifest (plus its env file) in, the expected domain XML out.

Each case in ``tests/data/golden`` is ``<case>.vmi.yaml``, an optional ``<case>.env`` (the
device environment, as beside a manifest on bare metal) and ``<case>.domain.xml``, the
expected output. The render settings of a case are in ``CASE_SETTINGS`` below.

Outputs are compared after C14N canonicalisation with whitespace stripped, so only real
changes fail. Every golden file is also checked by ``virt-xml-validate ... domain`` and
defined and started on libvirt's ``test:///default``, so libvirt itself vouches for it.

To regenerate the expected files after an intended change, run::

    REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/core/test_golden_domains.py

then review the diff under tests/data/golden before committing it.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from handler.baremetal.manifest_file import default_uid, load_manifest
from handler.core.attachments import resolve_on_host
from handler.core.device_env import AssignedDevice, resolve_devices
from handler.core.domain_identity import DomainIdentity
from handler.core.domain_state import Power
from handler.core.domain_xml import identity_of, render_domain
from handler.core.env_text import parse_env_text
from handler.core.render_settings import RenderSettings
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import load_templates
from handler.virt.hypervisor import LibvirtHypervisor

TEMPLATES = load_templates()

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden"
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
LOG_DIR = "/var/lib/qat-handler/logs"
FILES_DIR = "/var/lib/qat-handler/guests"

CASE_SETTINGS: dict[str, RenderSettings] = {
    "qat-one-qatn": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "qat-two-shuffled": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "hostdevices-pci-resource": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "mixed-two-resources": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "kernel-boot": RenderSettings(domain_type="qemu", log_dir=LOG_DIR, templates=TEMPLATES),
    "host-disks": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "no-devices": RenderSettings(log_dir="/run/qat/logs/", templates=TEMPLATES),
    "domain-qemu": RenderSettings(domain_type="qemu", log_dir=LOG_DIR, templates=TEMPLATES),
    "managed-hostdevs": RenderSettings(managed_hostdevs=True, log_dir=LOG_DIR, templates=TEMPLATES),
    "cpu-passthrough": RenderSettings(cpu_mode="host-passthrough", log_dir=LOG_DIR, templates=TEMPLATES),
    "network-pod": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "network-bridge": RenderSettings(log_dir=LOG_DIR, templates=TEMPLATES),
    "cloud-init": RenderSettings(log_dir=LOG_DIR, files_dir=FILES_DIR, templates=TEMPLATES),
    "container-empty-disks": RenderSettings(log_dir=LOG_DIR, files_dir=FILES_DIR, templates=TEMPLATES),
}
HOST_BRIDGES = {"br-storage"}
"""Names the simulated host has as bridges; every other name is an active libvirt network."""
CASES = sorted(CASE_SETTINGS)


@dataclass(frozen=True)
class Rendered:
    vmi: VMI
    devices: tuple[AssignedDevice, ...]
    settings: RenderSettings
    xml: str


def render_case(case: str) -> Rendered:
    """What ``qat-handler render <case>.vmi.yaml --env-file <case>.env`` prints."""
    manifest = GOLDEN_DIR / f"{case}.vmi.yaml"
    document = load_manifest(manifest)
    meta = document["metadata"]
    vmi = parse_vmi(document, default_uid=default_uid(meta.get("namespace") or "default", meta["name"]))
    env_file = GOLDEN_DIR / f"{case}.env"
    env = parse_env_text(env_file.read_text(), env_file.name) if env_file.exists() else {}
    devices = resolve_devices(vmi, env)
    settings = CASE_SETTINGS[case]
    attachments = resolve_on_host(
        vmi, settings.default_network, lambda name: None if name in HOST_BRIDGES else True, HOST_BRIDGES.__contains__
    )
    return Rendered(vmi, devices, settings, render_domain(vmi, devices, settings, attachments))


def canonical(xml: str) -> str:
    return etree.canonicalize(xml_data=xml, strip_text=True)


def golden_path(case: str) -> Path:
    return GOLDEN_DIR / f"{case}.domain.xml"


def test_every_manifest_has_a_case_and_every_case_its_files() -> None:
    manifests = sorted(path.name.removesuffix(".vmi.yaml") for path in GOLDEN_DIR.glob("*.vmi.yaml"))
    assert manifests == CASES
    env_files = {path.stem for path in GOLDEN_DIR.glob("*.env")}
    assert env_files <= set(CASES), "an env file without a manifest"
    expected = {path.name.removesuffix(".domain.xml") for path in GOLDEN_DIR.glob("*.domain.xml")}
    assert expected == set(CASES) or REGENERATE, "a case has no expected XML: run with REGENERATE_GOLDEN=1"


@pytest.mark.parametrize("case", CASES)
def test_rendered_xml_matches_golden_file(case: str) -> None:
    rendered = render_case(case).xml
    path = golden_path(case)
    if REGENERATE:
        path.write_text(rendered)
    assert path.exists(), f"{path.name} is missing; run with REGENERATE_GOLDEN=1 to create it"
    expected = path.read_text()
    if canonical(rendered) != canonical(expected):
        diff = "\n".join(
            difflib.unified_diff(expected.splitlines(), rendered.splitlines(), "expected", "rendered", lineterm="")
        )
        pytest.fail(f"{case}: rendered XML differs from {path.name} (REGENERATE_GOLDEN=1 to accept):\n{diff}")


def test_canonical_comparison_sees_a_changed_attribute() -> None:
    """The comparison ignores layout but not content, or every golden test would pass vacuously."""
    xml = golden_path("qat-one-qatn").read_text()
    assert canonical(xml) == canonical(xml.replace("\n  ", "\n"))
    assert canonical(xml) != canonical(xml.replace('managed="no"', 'managed="yes"'))


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate is not installed")
@pytest.mark.parametrize("case", CASES)
def test_golden_file_passes_virt_xml_validate(case: str) -> None:
    result = subprocess.run(
        ["virt-xml-validate", str(golden_path(case)), "domain"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_virt_xml_validate_rejects_a_broken_domain(tmp_path: Path) -> None:
    """Proof the validator call above can fail: a hostdev mode the schema does not know."""
    if shutil.which("virt-xml-validate") is None:
        pytest.skip("virt-xml-validate is not installed")
    root = etree.fromstring(golden_path("qat-one-qatn").read_bytes())
    hostdev = root.find("devices/hostdev")
    assert hostdev is not None
    hostdev.set("mode", "sideways")
    broken = tmp_path / "broken.xml"
    broken.write_bytes(etree.tostring(root))
    result = subprocess.run(["virt-xml-validate", str(broken), "domain"], capture_output=True, timeout=60)
    assert result.returncode != 0


@pytest.fixture(scope="module")
def hypervisor() -> Iterator[LibvirtHypervisor]:
    hyp = LibvirtHypervisor("test:///default")
    hyp.connect()
    yield hyp
    hyp.connection.close()


def summary(xml: str) -> dict[str, object]:
    """What a domain XML says about the guest, in a form both ours and libvirt's can be reduced to."""
    root = etree.fromstring(xml.encode())

    def text(path: str) -> str | None:
        found = root.find(path)
        return None if found is None else found.text

    hostdevs = []
    for hostdev in root.iterfind("devices/hostdev"):
        address = hostdev.find("source/address")
        assert address is not None
        alias = hostdev.find("alias")
        hostdevs.append(
            (
                None if alias is None else alias.get("name"),
                hostdev.get("type"),
                hostdev.get("managed"),
                hostdev.find("driver").get("name"),
                tuple(int(address.get(part, ""), 16) for part in ("domain", "bus", "slot", "function")),
            )
        )
    disks = []
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        assert target is not None
        disks.append(
            (
                disk.find("alias").get("name"),
                disk.find("source").get("file"),
                target.get("dev"),
                target.get("bus"),
                disk.find("readonly") is not None,
                disk.findtext("serial"),
            )
        )
    return {
        "type": root.get("type"),
        "name": text("name"),
        "uuid": text("uuid"),
        "memory_kib": text("memory"),
        "vcpu": text("vcpu"),
        "cpu_mode": root.find("cpu").get("mode"),
        "cores": root.find("cpu/topology").get("cores"),
        "kernel": (text("os/kernel"), text("os/initrd"), text("os/cmdline")),
        "acpi": root.find("features/acpi") is not None,
        "serial_log": root.find("devices/serial/log").get("file"),
        "interfaces": sorted(
            (
                nic.get("type"),
                nic.find("mac").get("address"),
                dict(nic.find("source").attrib),
                nic.find("model").get("type"),
                nic.find("alias").get("name"),
            )
            for nic in root.iterfind("devices/interface")
        ),
        "rng": [(rng.get("model"), rng.findtext("backend")) for rng in root.iterfind("devices/rng")],
        "hostdevs": sorted(hostdevs, key=repr),
        "disks": sorted(disks, key=repr),
    }


@pytest.mark.parametrize("case", CASES)
def test_golden_domain_defines_and_starts_on_libvirt(case: str, hypervisor: LibvirtHypervisor) -> None:
    rendered = render_case(case)
    xml = golden_path(case).read_text()
    name = rendered.vmi.domain_name
    hypervisor.define(xml)
    try:
        hypervisor.start(name)
        observed = hypervisor.observe(name)
        assert observed is not None
        assert observed.power is Power.RUNNING
        assert observed.uuid == rendered.vmi.uid
        expected: DomainIdentity = identity_of(rendered.vmi, rendered.devices, rendered.settings)
        assert observed.identity == expected
        assert [(d.name, str(d.bdf)) for d in observed.identity.devices] == [
            (d.name, str(d.bdf)) for d in rendered.devices
        ]
        live = hypervisor.connection.get().lookupByName(name).XMLDesc(0)
        assert summary(live) == summary(xml)
        assert name in {d.name for d in hypervisor.list_managed()}
    finally:
        hypervisor.destroy(name)
        hypervisor.undefine(name)
    assert hypervisor.observe(name) is None
