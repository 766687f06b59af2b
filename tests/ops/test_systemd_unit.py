"""The systemd unit: systemd-analyze verifies it and scores its hardening; directives the agent
relies on are present; the runtime survives MemoryDenyWriteExecute."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handler.core.stop_budget import UNIT_GRACE_SECONDS, UNIT_STOP_TIMEOUT_SECONDS, stop_extension, stop_seconds
from handler.core.vmi_schema import MAX_GRACE_SECONDS

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "qat-handler.service"
DEFAULTS = SYSTEMD / "qat-handler.default"
SYSUSERS = SYSTEMD / "qat-handler.sysusers"

MAX_EXPOSURE = 2.0
# `qat-handler agent` flags (handler/cli).
AGENT_FLAGS = {
    "--vmi-dir",
    "--connect",
    "--state-dir",
    "--host-root",
    "--domain-type",
    "--on-stop",
    "--log-format",
    "--metrics-address",
}


def directives(path: Path) -> dict[str, list[str]]:
    """Section.Key -> values in order (keys such as SystemCallFilter= may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def seconds(span: str) -> float:
    """A systemd time span as systemd itself reads it."""
    result = analyze("timespan", span)
    assert result.returncode == 0, result.stderr
    match = re.search(r"μs: (\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1)) / 1_000_000


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return directives(UNIT)


def exec_binary(unit: dict[str, list[str]]) -> str:
    return unit["Service.ExecStart"][0].split()[0]


def commands(unit: dict[str, list[str]]) -> list[str]:
    """The executables of every Exec*= line, without the -@:+! prefixes."""
    return [
        value.split()[0].lstrip("-@:+!")
        for key, values in unit.items()
        if key.startswith("Service.Exec")
        for value in values
    ]


@pytest.fixture
def root(tmp_path: Path, unit: dict[str, list[str]]) -> Path:
    """A root holding the distribution's units and stand-ins for the unit's commands, so verify
    checks everything, the Exec*= paths included, without installing anything on this host."""
    (tmp_path / "lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", tmp_path / "lib/systemd/system", symlinks=True)
    for command in commands(unit):
        # Only the agent itself may be missing here; the rest are system binaries the target has too.
        assert command == exec_binary(unit) or Path(command).exists(), command
        stand_in = tmp_path / command.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    return tmp_path


def verify(root: Path, text: str) -> subprocess.CompletedProcess[str]:
    (root / "etc/systemd/system/qat-handler.service").write_text(text)
    return analyze("verify", f"--root={root}", "qat-handler.service")


def test_verify_is_clean(root: Path) -> None:
    result = verify(root, UNIT.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_does_catch_mistakes(root: Path) -> None:
    """The harness would be worthless if verify passed anything; a typo must show up."""
    result = verify(root, UNIT.read_text().replace("KillMode=mixed", "KillMode=mixd\nWatchdogSecs=30s"))
    assert "kill mode" in result.stderr
    assert "WatchdogSecs" in result.stderr


def test_verify_checks_the_binary_exists(root: Path, unit: dict[str, list[str]]) -> None:
    (root / exec_binary(unit).lstrip("/")).unlink()
    result = verify(root, UNIT.read_text())
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_security_exposure_is_low() -> None:
    result = analyze("security", "--offline=true", str(UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for qat-handler\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) < MAX_EXPOSURE, result.stdout


def test_lifecycle_directives(unit: dict[str, list[str]]) -> None:
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.KillMode"] == ["mixed"]
    assert unit["Service.ExecReload"] == ['/bin/sh -c "kill -HUP $MAINPID"']
    # Above the slowest legitimate libvirt call (a first define probing QEMU took 26 s under the
    # real unit, tests/ops/test_unit_under_systemd.py), yet a wedged agent restarts in minutes.
    assert 120 <= seconds(unit["Service.WatchdogSec"][0]) <= 300
    assert seconds(unit["Service.TimeoutStartSec"][0]) >= seconds(unit["Service.WatchdogSec"][0])
    timeout = seconds(unit["Service.TimeoutStopSec"][0])
    assert timeout >= UNIT_STOP_TIMEOUT_SECONDS == stop_seconds(UNIT_GRACE_SECONDS)
    # Every grace the parser accepts is covered: by the unit's own timeout, or by the extension
    # the agent asks for when it starts stopping (tests/ops/test_agent_service.py sees it sent).
    for grace in (0, 30, UNIT_GRACE_SECONDS, UNIT_GRACE_SECONDS + 1, MAX_GRACE_SECONDS):
        budget = timeout if stop_extension(grace) is None else stop_extension(grace)
        assert budget >= stop_seconds(grace), f"a {grace} s grace would be cut short"


def test_a_crash_loop_gives_up_but_an_operator_may_restart_by_hand(unit: dict[str, list[str]]) -> None:
    # the systemd host's tests restart the agent 6 times within a few minutes, as an operator might
    assert seconds(unit["Unit.StartLimitIntervalSec"][0]) == 600
    assert int(unit["Unit.StartLimitBurst"][0]) >= 8


def test_ordered_after_libvirt(unit: dict[str, list[str]]) -> None:
    after = " ".join(unit["Unit.After"]).split()
    assert {"libvirtd.service", "virtqemud.socket"} <= set(after)
    assert "libvirtd.service" in " ".join(unit["Unit.Wants"]).split()


def test_directories_and_identity(unit: dict[str, list[str]]) -> None:
    assert unit["Service.StateDirectory"] == ["qat-handler"]
    assert unit["Service.RuntimeDirectory"] == ["qat-handler"]
    assert unit["Service.RuntimeDirectoryPreserve"] == ["yes"]
    assert "qat-handler" in unit["Service.ConfigurationDirectory"][0].split()
    assert unit["Service.ReadOnlyPaths"] == ["/etc/qat-handler"]
    assert unit["Service.User"] == ["qat-handler"]
    assert unit["Service.SupplementaryGroups"] == ["libvirt"]
    assert unit["Service.CapabilityBoundingSet"] == [""]
    assert unit["Service.UMask"] == ["0077"]


def test_defaults_file_feeds_the_agent(unit: dict[str, list[str]]) -> None:
    assert unit["Service.EnvironmentFile"] == ["-/etc/default/qat-handler"]
    # Unbraced, so systemd splits the value into separate arguments.
    assert unit["Service.ExecStart"][0].endswith(" agent $QAT_HANDLER_ARGS")
    assignments = dict(line.split("=", 1) for line in DEFAULTS.read_text().splitlines() if line and line[0] != "#")
    args = shlex.split(shlex.split(assignments["QAT_HANDLER_ARGS"])[0])
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert set(flags) <= AGENT_FLAGS
    assert flags["--state-dir"] == "/var/lib/" + unit["Service.StateDirectory"][0]
    assert flags["--vmi-dir"].startswith("/etc/qat-handler/")
    host = flags["--metrics-address"].rpartition(":")[0]
    # IPAddressAllow=localhost would silently drop scrapes on any other address.
    assert unit["Service.IPAddressAllow"] == ["localhost"]
    assert host in ("127.0.0.1", "[::1]")


def test_sysusers_creates_the_unit_user(tmp_path: Path, unit: dict[str, list[str]]) -> None:
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", "--dry-run", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert f"Creating user '{unit['Service.User'][0]}'" in out
    assert f"Creating group '{unit['Service.Group'][0]}'" in out
    # polkit's rule for group libvirt reads the user database: the group must be there, not only
    # in SupplementaryGroups= (tests/ops/test_unit_under_systemd.py shows the refusal without it)
    members = [line.split() for line in SYSUSERS.read_text().splitlines() if line.startswith("m ")]
    assert members == [["m", unit["Service.User"][0], group] for group in unit["Service.SupplementaryGroups"]]


PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
MDWE_CHILD = """
import ctypes, sys, threading, urllib.request
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
# W+X is now refused for this process, as MemoryDenyWriteExecute=yes does.
import libvirt, lxml.etree, structlog
from handler.ops.health_server import HealthServer
from handler.ops.logs import configure_logging
from handler.ops.metrics import Metrics
libvirt.virEventRegisterDefaultImpl()
conn = libvirt.open("test:///default")
threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
dom = conn.lookupByName("test")
lxml.etree.fromstring(dom.XMLDesc())
configure_logging("json")
structlog.get_logger().info("mdwe ok", domain=dom.name())
server = HealthServer("127.0.0.1:0", Metrics(), lambda: (True, "ok"), lambda: (True, "ok"))
port = server.start()
assert b"qat_handler_build_info" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
server.stop()
"""


def test_runtime_survives_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute= is enforced with seccomp by systemd; the kernel's own MDWE prctl
    (Linux 6.3+) refuses the same thing, so we run the agent's stack under it."""
    result = subprocess.run(
        [sys.executable, "-c", MDWE_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    if result.returncode == 77:
        pytest.skip(f"kernel has no PR_SET_MDWE: {os.uname().release}")
    assert result.returncode == 0, result.stderr
    assert '"event": "mdwe ok"' in result.stdout


def test_mdwe_prctl_really_refuses_write_execute() -> None:
    """Control for the test above: under the prctl, an RWX mapping must fail."""
    child = (
        "import ctypes, mmap, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"sys.exit(77) if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) else None\n"
        "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=30)
    if result.returncode == 77:
        pytest.skip("kernel has no PR_SET_MDWE")
    assert result.returncode != 0
    assert "PermissionError" in result.stderr or "Operation not permitted" in result.stderr
