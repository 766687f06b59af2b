"""Editing a running guest's manifest in place, saved the way vim saves by default: the file is
renamed away as a backup, the new one written, the backup removed. For that moment no
manifest is there. The agent must take the save for a change (RestartRequired), never for a
removal: a removal sends the guest an ACPI shutdown, and the guest would then stay off.

The gap here (0.3 s) is longer than an editor's, so that the agent certainly looks while the
file is away; the real CLI on libvirt's test driver.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cli.bare_agent import BareAgent, manifest, write_manifests


def test_a_manifest_saved_by_rename_and_rewrite_is_a_change_and_the_guest_runs_on(tmp_path: Path) -> None:
    vmis = write_manifests(tmp_path / "vmis", "edited")
    agent = BareAgent(tmp_path, vmis)
    try:
        agent.wait_phases({"edge/edited": "Running"}, "the guest")
        path = vmis / "edited.yaml"
        path.rename(vmis / "edited.yaml~")
        time.sleep(0.3)
        path.write_text(manifest("edited", memory="128Mi"))
        (vmis / "edited.yaml~").unlink()

        def restart_required() -> bool:
            return any('"RestartRequired"' in line for line in agent.lines())

        agent.wait_for("the edit seen as a change", restart_required)
        time.sleep(1.5)  # past the agent's wait for a vanished manifest to come back
        assert agent.phases() == {"edge/edited": "Running"}
    finally:
        agent.stop()
    mine = [r for r in agent.records() if r.get("vmi") == "edge/edited"]
    assert not [r for r in mine if r["event"] in ("ACPI shutdown requested", "domain undefined", "VMI forgotten")]
    assert [r.get("reason") for r in mine if r.get("reason") in ("Started", "RestartRequired")] == [
        "Started",
        "RestartRequired",
    ]


def test_an_env_file_fixed_in_an_editor_gives_the_guest_its_vf_never_the_allocators(tmp_path: Path) -> None:
    vmis = write_manifests(tmp_path / "vmis", "fixed")
    (vmis / "fixed.env").write_text("QAT0=0000:3d:09.0\n")  # a typo: no such VF on this host
    agent = BareAgent(tmp_path, vmis)
    try:

        def refused() -> bool:
            return any('"DeviceRejected"' in line or '"DeviceEnvInvalid"' in line for line in agent.lines())

        agent.wait_for("the typo refused", refused)
        (vmis / "fixed.env").rename(vmis / "fixed.env~")
        time.sleep(0.3)  # longer than an editor's save, so that the agent certainly looks
        (vmis / "fixed.env").write_text("QAT0=0000:3d:01.3\n")
        (vmis / "fixed.env~").unlink()
        agent.wait_phases({"edge/fixed": "Running"}, "the guest on the fixed env file's VF")
    finally:
        agent.stop()
    status = agent.records()
    assert not [r for r in status if r["event"] == "VFs allocated"], "the allocator picked a VF mid-save"
    started = [r for r in status if r.get("reason") == "Started" and r.get("vmi") == "edge/fixed"]
    assert started and started[0]["bdfs"] == ["0000:3d:01.3"]


def test_a_fifo_named_like_a_manifest_is_refused_and_blocks_no_other_manifest(tmp_path: Path) -> None:
    """`mkfifo vmis/f.yaml` (or a link to /dev/zero): once, the directory's reader opened it and
    waited for a writer forever, holding every later manifest back."""
    vmis = write_manifests(tmp_path / "vmis")
    agent = BareAgent(tmp_path, vmis)
    try:
        agent.wait_for("the agent to start", lambda: any('"first sync done"' in line for line in agent.lines()))
        os.mkfifo(vmis / "f.yaml")
        (vmis / "zero.yaml").symlink_to("/dev/zero")
        time.sleep(1.5)  # past the settle of a file created but never closed, so both are read
        (vmis / "after.yaml").write_text(manifest("after"))
        agent.wait_for("a manifest written after them", lambda: agent.phases().get("edge/after") == "Running")
        assert agent.phases() == {"default/f": "Scheduled", "default/zero": "Scheduled", "edge/after": "Running"}
    finally:
        agent.stop()
    refused = [r for r in agent.records() if r.get("reason") == "InvalidManifest" and "file" in r]
    assert {r["file"] for r in refused} == {"f.yaml", "zero.yaml"}
    assert all("not a regular file (a FIFO, socket or device)" in r["event"] for r in refused), refused
