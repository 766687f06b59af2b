"""The agent as systemd and Prometheus see it: a real ``qat-handler agent`` process on
libvirt's test driver and a simulated QAT host, with NOTIFY_SOCKET bound here and its
metrics and health endpoints scraped over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from handler.core.bdf import Bdf
from handler.core.stop_budget import UNIT_GRACE_SECONDS
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from tests.support.http_probe import free_port, get

REPO = Path(__file__).resolve().parents[2]


def agent_command(vmis: Path, state: Path, *flags: str, connect: str = "test:///default") -> list[str]:
    """``qat-handler agent`` as the unit runs it, with the flags a test adds."""
    return [sys.executable, "-m", "handler", "agent", "--vmi-dir", str(vmis), "--connect", connect,
            "--state-dir", str(state), *flags]  # fmt: skip


def test_agent_notifies_systemd_and_serves_metrics(tmp_path: Path) -> None:
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=8),)))
    vmis = tmp_path / "vmis"
    shutil.copytree(REPO / "examples/vmis", vmis)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000")
    command = agent_command(
        vmis, tmp_path / "state", "--host-root", str(tmp_path / "host"), "--metrics-address", f"127.0.0.1:{port}",
        "--log-format", "json",
    )  # fmt: skip
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while "READY=1" not in messages and time.monotonic() < deadline:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                assert agent.poll() is None, agent.communicate()
        assert "READY=1" in messages, messages
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(m.startswith("WATCHDOG=1") for m in messages):
            with contextlib.suppress(TimeoutError):
                messages.append(notify.recv(4096).decode())
        assert "WATCHDOG=1" in messages
        statuses = [m for m in messages if m.startswith("STATUS=")]
        assert statuses and statuses[-1] == "STATUS=3 VMIs, 3 running, 0 failing", statuses
        _, exposition = get(f"http://127.0.0.1:{port}/metrics")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(exposition)
            for s in family.samples
        }
        assert samples[("qat_handler_vmis", (("phase", "Running"),))] == 3
        assert samples[("qat_handler_devices_assigned", ())] == 4
        assert samples[("qat_handler_libvirt_connected", ())] == 1
        assert samples[("qat_handler_reconcile_duration_seconds_count", ())] >= 3
        assert [name for name, _ in samples if name.endswith("_created")] == []  # no creation-time series
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(timeout=30)
        assert agent.returncode == 0, err
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                break
        assert "STOPPING=1" in messages
        assert messages.index("READY=1") < messages.index("STOPPING=1")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
        notify.close()


def grace_vmi(name: str, grace: int) -> str:
    return json.dumps({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "grace"},
        "spec": {"terminationGracePeriodSeconds": grace, "domain": {"memory": {"guest": "64Mi"}}},
    })  # fmt: skip


@pytest.mark.parametrize(("grace", "extension"), [(30, None), (UNIT_GRACE_SECONDS, None), (900, 930)])
def test_a_grace_longer_than_the_unit_allows_extends_the_stop_timeout(
    tmp_path: Path, grace: int, extension: int | None
) -> None:
    """--on-stop shutdown with a guest whose grace outlasts TimeoutStopSec: systemd is asked for
    the largest grace plus the stop margin (EXTEND_TIMEOUT_USEC) before any guest is stopped."""
    vmis = tmp_path / "vmis"
    vmis.mkdir()
    (vmis / "short.json").write_text(grace_vmi("short", 10))
    (vmis / "long.json").write_text(grace_vmi("long", grace))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    command = agent_command(vmis, tmp_path / "state", "--on-stop", "shutdown", "--log-format", "json")
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 120  # start-up only; generous for a loaded machine
        while "READY=1" not in messages and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                messages.append(notify.recv(4096).decode())
        assert "READY=1" in messages, agent.poll()
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
        with contextlib.suppress(TimeoutError):
            while True:
                messages.append(notify.recv(4096).decode())
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
        notify.close()
    extends = [m for m in messages if m.startswith("EXTEND_TIMEOUT_USEC=")]
    if extension is None:
        assert extends == [], messages
        return
    assert extends == [f"EXTEND_TIMEOUT_USEC={extension * 1_000_000}"], messages
    assert messages.index("STOPPING=1") < messages.index(extends[0])
    assert '"event": "all guests are off"' in out


def test_agent_with_libvirt_unreachable_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "vmis").mkdir()
    result = subprocess.run(
        agent_command(
            tmp_path / "vmis", tmp_path / "s", connect="qemu+unix:///system?socket=/nonexistent/libvirt-sock"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("qat-handler:")]
    assert len(lines) == 1, result.stderr
    assert "fix: start libvirtd" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:notaport"])
def test_bad_metrics_address_fails_in_one_line(tmp_path: Path, address: str) -> None:
    (tmp_path / "vmis").mkdir()
    result = subprocess.run(
        agent_command(tmp_path / "vmis", tmp_path / "s", "--metrics-address", address),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "--metrics-address" in result.stderr and "Traceback" not in result.stderr


def test_sighup_rereads_the_permitted_devices_without_a_restart(tmp_path: Path) -> None:
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=2),)))
    vmis = tmp_path / "vmis"
    vmis.mkdir()
    shutil.copy(REPO / "examples/vmis/vmi-qat.yaml", vmis)
    shutil.copy(REPO / "examples/vmis/vmi-qat.env", vmis)
    permitted = tmp_path / "permitted.yaml"
    permitted.write_text(
        "pciHostDevices:\n  - pciVendorSelector: '8086:4941'\n    resourceName: qat.intel.com/generic\n"
    )
    status = tmp_path / "state/status.json"

    def phase() -> str:
        try:
            return str(json.loads(status.read_text())["vmis"]["default/vmi-qat"].get("phase", ""))
        except (OSError, ValueError, KeyError):
            return ""

    flags = ("--host-root", str(tmp_path / "host"), "--permitted-devices", str(permitted), "--permitted-mode",
             "replace", "--log-format", "json", "--on-stop", "keep")  # fmt: skip
    agent = subprocess.Popen(
        agent_command(vmis, tmp_path / "state", *flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while phase() != "Scheduled" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert phase() == "Scheduled"  # 8086:37c9 is not on the replaced list
        assert "DeviceRejected" in status.read_text()
        permitted.write_text(
            "pciHostDevices:\n  - pciVendorSelector: '8086:37c9'\n    resourceName: qat.intel.com/generic\n"
        )
        agent.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while phase() != "Running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert phase() == "Running"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.communicate()
