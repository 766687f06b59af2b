"""The container image: built by deploy/image/build.sh from Debian packages and wheels (no
registry), it runs every entry point of ``qat-handler``, the launcher as the launcher pod
runs it (non-root, read-only root), and the manifests name it as the script does."""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from handler import __version__
from handler.cli.main import build_parser
from handler.core.handoff import HANDOFF_FILE, REPORT_FILE, AgentReport, report_to_json
from tests.deploy.manifests import containers, load_all, pod_spec
from tests.image.podman import REPO, RUN, build, image_name, podman_run

pytestmark = pytest.mark.image


def subcommands() -> list[str]:
    """Asked of the CLI itself, so a new subcommand is tested without touching this file."""
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return sorted(actions[0].choices)


@pytest.fixture(scope="module")
def image() -> str:
    build()
    return image_name()


def test_the_image_is_named_without_a_registry_host_and_after_the_version() -> None:
    assert image_name() == f"qat-handler:{__version__}"


def test_every_manifest_names_the_image_the_script_builds() -> None:
    name = image_name()
    found = [
        (doc.label, c["image"])
        for doc in load_all()
        if doc.kind in ("DaemonSet", "Deployment", "Pod")
        for c in containers(pod_spec(doc))
    ]
    found += [
        (doc.label, arg.split("=", 1)[1])
        for doc in load_all()
        if doc.kind in ("DaemonSet", "Deployment", "Pod")
        for c in containers(pod_spec(doc))
        for arg in c.get("args") or []
        if arg.startswith("--launcher-image=")
    ]
    assert found
    assert [where for where, image in found if image != name] == []


def test_version(image: str) -> None:
    code, output = podman_run("--version")
    assert (code, output.strip()) == (0, f"qat-handler {__version__}")


def test_no_arguments_prints_the_help(image: str) -> None:
    """The image's CMD is --help: `podman run IMAGE` explains itself."""
    code, output = podman_run()
    assert code == 0, output
    for command in subcommands():
        assert command in output


@pytest.mark.parametrize("command", subcommands())
def test_each_subcommand_help(image: str, command: str) -> None:
    code, output = podman_run(command, "--help")
    assert code == 0, output
    assert output.startswith(f"usage: qat-handler {command}"), output


def test_every_module_imports(image: str) -> None:
    """Every dependency the entry points need at run time is in the image (``--help`` imports lazily)."""
    script = (
        "import importlib, pkgutil, handler\n"
        "names = [m.name for m in pkgutil.walk_packages(handler.__path__, 'handler.')]\n"
        "names.remove('handler.__main__')  # importing it runs the CLI\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    code, output = podman_run("-c", script, options=("--entrypoint", "python3"))
    assert code == 0, output
    assert int(output.strip()) > 50


def test_render_finds_the_templates_and_libvirt_validates(image: str) -> None:
    """The installed data files (domain templates) are found, and lxml renders a domain."""
    examples = REPO / "examples" / "vmis"
    code, output = podman_run(
        "render", "/vmis/vmi-qat.yaml", "--domain-type", "qemu", options=("-v", f"{examples}:/vmis:ro")
    )
    assert code == 0, output
    assert output.startswith('<domain type="qemu">'), output[:300]
    assert '<hostdev mode="subsystem" type="pci" managed="no">' in output, output


def test_launcher_as_the_launcher_pod_runs_it(image: str, tmp_path: Path) -> None:
    """Uid 107, read-only root, the slot mounted: the handoff is written, and SIGTERM (to PID 1) asks the
    agent to stop the guest; an agent report of the guest off lets it exit 0."""
    slot = tmp_path / "slot"
    slot.mkdir(mode=0o777)
    slot.chmod(0o1777)
    name = f"qat-handler-test-{uuid.uuid4().hex[:8]}"
    vmi_uid, pod_uid = str(uuid.uuid4()), str(uuid.uuid4())
    argv = [
        str(RUN), "-d", "--name", name,
        "--user", "107:107", "--read-only", "-v", f"{slot}:/var/run/qat-handler/slot",
        "-e", "QAT0=0000:3d:01.0", "-e", f"POD_UID={pod_uid}", "-e", "VMI_NAMESPACE=default",
        "-e", "VMI_NAME=vmi-qat", "-e", f"VMI_UID={vmi_uid}", "-e", "VMI_GRACE_SECONDS=30",
        "--", "launcher", "--log-format=json",
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    try:
        handoff = wait_for_json(slot / HANDOFF_FILE, timeout=60)
        assert handoff["vmi"] == {"namespace": "default", "name": "vmi-qat", "uid": vmi_uid}
        assert (handoff["podUID"], handoff["env"], handoff["graceSeconds"]) == (pod_uid, {"QAT0": "0000:3d:01.0"}, 30)
        subprocess.run(["podman", "kill", "--signal", "TERM", name], check=True, capture_output=True, timeout=60)
        stopping = wait_for_json(slot / HANDOFF_FILE, timeout=60, until=lambda d: d.get("stopRequested"))
        assert stopping["stopRequested"] is True
        report = report_to_json(AgentReport(vmi_uid=vmi_uid, phase="Succeeded", guest_off=True))
        (slot / REPORT_FILE).write_text(json.dumps(report))
        waited = subprocess.run(["podman", "wait", name], capture_output=True, text=True, timeout=120)
        assert waited.stdout.strip() == "0", waited.stdout + waited.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=120)


def test_oci_archive(image: str, tmp_path: Path) -> None:
    archive = tmp_path / "qat-handler.oci.tar"
    build("--archive", str(archive))
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[arg-type]
    assert index["manifests"] and index["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def wait_for_json(path: Path, timeout: float, until=lambda data: True) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and until(data):
            return data  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear (or reach the expected state) within {timeout} s")
