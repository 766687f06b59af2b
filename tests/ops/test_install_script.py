"""deploy/baremetal/install.sh lays out a working service: checked under a scratch root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy/baremetal/install.sh"


def install(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--root", str(root), "--skip-python"], capture_output=True, text=True, timeout=60, check=False
    )


def test_install_lays_out_unit_defaults_sysusers_and_vmi_dir(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "etc/systemd/system/qat-handler.service"
    assert unit.read_text() == (REPO / "systemd/qat-handler.service").read_text()
    assert (tmp_path / "etc/default/qat-handler").read_text() == (REPO / "systemd/qat-handler.default").read_text()
    assert (tmp_path / "usr/lib/sysusers.d/qat-handler.conf").is_file()
    assert (tmp_path / "etc/qat-handler/vmis").is_dir()
    link = tmp_path / "usr/local/bin/qat-handler"
    assert link.is_symlink() and str(link.readlink()) == "/opt/qat-handler/venv/bin/qat-handler"


def test_install_keeps_an_edited_defaults_file(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    defaults = tmp_path / "etc/default/qat-handler"
    defaults.write_text('QAT_HANDLER_ARGS="--vmi-dir /srv/vmis"\n')
    again = install(tmp_path)
    assert again.returncode == 0 and "keeping the existing" in again.stdout
    assert defaults.read_text() == 'QAT_HANDLER_ARGS="--vmi-dir /srv/vmis"\n'


def test_installed_unit_verifies_against_the_installed_layout(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    shutil.copytree("/lib/systemd/system", tmp_path / "lib/systemd/system", symlinks=True)
    agent = tmp_path / "opt/qat-handler/venv/bin/qat-handler"  # the venv the script would have built
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    shell = tmp_path / "bin/sh"  # ExecReload='s, which every Debian host has (dash is essential)
    shell.parent.mkdir(parents=True, exist_ok=True)
    shell.write_text("#!/bin/sh\n")
    shell.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", "qat-handler.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr
    agent.unlink()  # and verify does notice a missing agent, through the /usr/local/bin link
    broken = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", "qat-handler.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "qat-handler" in broken.stderr and broken.stderr != ""
