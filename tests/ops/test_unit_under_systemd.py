"""The unit as systemd itself runs it: PID 1 in a container (tests/ops/systemd_host.py), the
files laid out by install.sh, and the commands an operator types.

test_systemd_unit.py reads the unit's directives; this proves them: that the sandbox lets
the agent do its work and nothing more, that READY, STATUS, the watchdog, reload, restart
and stop behave as the README says, and that the journal carries the agent's fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.ops.systemd_host import SystemdHost, booted, host_image

pytestmark = [pytest.mark.image, pytest.mark.systemd]

MANIFEST = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}, namespace: unit}}
spec:
  terminationGracePeriodSeconds: {grace}
  domain:
    memory: {{guest: 64Mi}}
    devices: {{}}
"""


@pytest.fixture(scope="module")
def host() -> Iterator[SystemdHost]:
    with booted(host_image()) as host:
        yield host


def running(host: SystemdHost, name: str, timeout: float = 60) -> dict[str, object]:
    """Wait until ``qat-handler status`` shows unit/NAME Running; its row of ``-o json``."""
    host.wait(f"unit/{name} Running", f"qat-handler status | grep -qE '^unit +{name} +Running '", timeout)
    rows = json.loads(host.ok("qat-handler status -o json"))
    row: dict[str, object] = next(r for r in rows if r["namespace"] == "unit" and r["name"] == name)
    return row


def test_the_agent_runs_as_its_own_user_without_capabilities_under_a_syscall_filter(host: SystemdHost) -> None:
    shown = host.show("ActiveState", "SubState", "MainPID", "StatusText", "WatchdogTimestampMonotonic")
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running")  # Type=notify: READY=1 came
    assert shown["StatusText"].endswith("failing"), shown  # STATUS= ("N VMIs, N running, 0 failing")
    assert shown["WatchdogTimestampMonotonic"] != "0", "no WATCHDOG=1 reached systemd"
    status = dict(
        line.split(":", 1) for line in host.ok(f"cat /proc/{shown['MainPID']}/status").splitlines() if ":" in line
    )
    uid = host.ok("id -u qat-handler").strip()  # made by systemd-sysusers at boot, from install.sh's entry
    libvirt_gid = host.ok("getent group libvirt | cut -d: -f3").strip()
    assert status["Uid"].split() == [uid] * 4
    assert libvirt_gid in status["Groups"].split()  # SupplementaryGroups=libvirt: the daemon's socket
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # SystemCallFilter= is in force


def test_the_agent_can_write_its_state_but_not_its_configuration_or_the_system(host: SystemdHost) -> None:
    pid = host.show("MainPID")["MainPID"]
    as_agent = f"nsenter -t {pid} -m -S $(id -u qat-handler) -G $(id -g qat-handler) --"
    host.ok(f"{as_agent} touch /var/lib/qat-handler/.probe && rm /var/lib/qat-handler/.probe")
    for path in ("/etc/qat-handler/vmis/.probe", "/etc/qat-handler/.probe", "/usr/.probe", "/etc/.probe"):
        code, out = host.sh(f"nsenter -t {pid} -m -- touch {path}")  # even as root, in the agent's view
        assert code != 0 and "Read-only file system" in out, f"{path} is writable to the agent: {out}"
    owners = host.ok("stat -c '%U %a' /etc/qat-handler /etc/qat-handler/vmis").split("\n")
    assert owners[:2] == ["root 755", "root 755"], owners  # as install.sh made them


def test_a_manifest_dropped_in_runs_and_the_journal_is_searchable_by_vmi(host: SystemdHost) -> None:
    host.write_manifest("dropped.yaml", MANIFEST.format(name="dropped", grace=30))
    row = running(host, "dropped")
    assert row["domain"] == "unit_dropped"
    entries = [json.loads(line) for line in host.ok("journalctl -u qat-handler VMI=unit/dropped -o json").splitlines()]
    assert any(e.get("REASON") == "Started" and e.get("DOMAIN") == "unit_dropped" for e in entries), entries
    assert all(e["SYSLOG_IDENTIFIER"] == "qat-handler" and e["_SYSTEMD_UNIT"] == "qat-handler.service" for e in entries)


def test_metrics_and_readiness_are_served_on_loopback(host: SystemdHost) -> None:
    fetch = "python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())'"
    metrics = host.ok(f"{fetch} http://127.0.0.1:9471/metrics")
    assert "qat_handler_libvirt_connected 1.0" in metrics.splitlines()
    assert host.ok(f"{fetch} http://127.0.0.1:9471/readyz").strip() == "ok"


def test_reload_rereads_the_manifests_without_touching_guests(host: SystemdHost) -> None:
    host.write_manifest("kept.yaml", MANIFEST.format(name="kept", grace=30))
    running(host, "kept")
    pid = host.show("MainPID")["MainPID"]
    host.ok("systemctl reload qat-handler")  # ExecReload= runs in the sandbox too
    host.wait("the reload logged", "journalctl -u qat-handler -o cat -n 20 | grep -x reloading")
    assert host.show("MainPID")["MainPID"] == pid
    assert running(host, "kept")["phase"] == "Running"
    assert "Reloaded qat-handler.service" in host.journal()


def test_the_vmi_directory_replaced_whole_is_followed_inside_the_sandbox(host: SystemdHost) -> None:
    """README, Bare metal: `mv vmis.new vmis` after moving the old one away, as configuration tools
    do, while the unit keeps /etc/qat-handler read-only in the agent's own mount namespace."""
    host.write_manifest("swapped-out.yaml", MANIFEST.format(name="swapped-out", grace=5))
    running(host, "swapped-out")
    others = {r["name"] for r in json.loads(host.ok("qat-handler status -o json")) if r["name"] != "swapped-out"}
    new = "/etc/qat-handler/vmis.new"
    host.ok(f"cp -a /etc/qat-handler/vmis {new} && rm {new}/swapped-out.yaml")
    host.ok(f"cat > {new}/swapped-in.yaml <<'EOF'\n{MANIFEST.format(name='swapped-in', grace=5)}EOF")
    host.ok(f"mv /etc/qat-handler/vmis /etc/qat-handler/vmis.old && mv {new} /etc/qat-handler/vmis")
    try:
        running(host, "swapped-in")
        host.wait("swapped-out gone", "! qat-handler status | grep -q swapped-out")
        rows = json.loads(host.ok("qat-handler status -o json"))
        assert {r["name"] for r in rows} == others | {"swapped-in"}, rows
        assert all(r["phase"] == "Running" for r in rows if r["name"] in others), rows
    finally:
        host.ok("rm -rf /etc/qat-handler/vmis.old")


def test_an_agent_started_by_hand_beside_the_service_is_refused_and_the_service_runs_on(host: SystemdHost) -> None:
    """README, Bare metal: one agent per state directory. Root typing the agent's command while the
    service runs shares /var/lib/qat-handler with it (the unit's StateDirectory=)."""
    pid = host.show("MainPID")["MainPID"]
    code, out = host.sh("qat-handler agent --connect test:///default", timeout=60)
    assert code == 2, out
    lines = [line for line in out.splitlines() if line.startswith("qat-handler:")]
    assert len(lines) == 1 and "Traceback" not in out, out
    assert f"(pid {pid})" in lines[0] and "fix: stop that agent (systemctl stop qat-handler)" in lines[0], out
    assert host.show("MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}


def test_a_killed_agent_is_restarted_and_its_guests_are_brought_back(host: SystemdHost) -> None:
    host.write_manifest("survivor.yaml", MANIFEST.format(name="survivor", grace=30))
    running(host, "survivor")
    before = host.show("MainPID", "NRestarts")
    host.ok(f"kill -9 {before['MainPID']}")
    host.wait(
        "systemd restarted the agent (Restart=on-failure, RestartSec=5s)",
        f"test $(systemctl show -p NRestarts --value qat-handler) -gt {before['NRestarts']}"
        " && systemctl is-active qat-handler",
        timeout=60,
    )
    assert host.show("MainPID")["MainPID"] != before["MainPID"]
    # The in-process test driver's domains died with the process: the new agent starts them again.
    assert running(host, "survivor")["domain"] == "unit_survivor"


def test_stop_shuts_guests_down_asks_for_a_long_grace_and_ends_cleanly(host: SystemdHost) -> None:
    host.write_manifest("long.yaml", MANIFEST.format(name="long", grace=400))
    running(host, "long")
    host.ok("systemctl stop qat-handler", timeout=120)
    try:
        shown = host.show("ActiveState", "Result")
        assert (shown["ActiveState"], shown["Result"]) == ("inactive", "success"), shown
        log = host.journal(60)
        # a grace above the unit's 300 s: the agent asked systemd for more time (EXTEND_TIMEOUT_USEC)
        assert "asking the service manager for more time to stop" in log
        assert "unit_long: the guest powered itself off after 1 ACPI request(s)" in log
        assert "all guests are off" in log and "Deactivated successfully" in log
        assert json.loads(host.ok("qat-handler status -o json")) != []  # the last status stays readable
    finally:
        host.ok("systemctl start qat-handler", timeout=120)


def test_on_the_system_libvirtd_polkit_lets_the_agent_in_and_its_listener_runs(host: SystemdHost) -> None:
    # libvirtd asks polkit; polkit's rule for group libvirt reads the user database, where the
    # sysusers entry puts qat-handler (SupplementaryGroups= alone was refused: libvirt error 94).
    assert "qat-handler" in host.ok("getent group libvirt").strip().split(":")[3].split(",")
    with host.on_system_libvirtd():
        shown = host.show("ActiveState", "MainPID")
        assert shown["ActiveState"] == "active", host.journal()
        fetch = "python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())'"
        assert "qat_handler_libvirt_connected 1.0" in host.ok(f"{fetch} http://127.0.0.1:9471/metrics").splitlines()
        # The daemon's events are heard by the agent's listener process, inside the same sandbox.
        uid = host.ok("id -u qat-handler").strip()
        assert host.processes("handler[.]virt[.]event_listener_main") == [(shown["MainPID"], uid)]


def test_a_real_guest_runs_under_the_unit_and_a_deaf_one_is_destroyed_at_its_grace(host: SystemdHost) -> None:
    with host.on_system_libvirtd():
        # No OS in it, so nothing answers ACPI: the stop must destroy it when its 5 s grace ends.
        host.write_manifest("real.yaml", MANIFEST.format(name="real", grace=5).replace("64Mi", "32Mi"))
        try:
            running(host, "real", timeout=180)  # the first define makes libvirtd probe QEMU
            qemu_uid = host.ok("id -u libvirt-qemu").strip()
            owners = [uid for _ppid, uid in host.processes("^/usr/bin/qemu-system-x86[_]64")]
            assert owners == [qemu_uid], owners  # QEMU itself, started by libvirtd, not by the agent
            host.ok("test -f /var/lib/qat-handler/logs/unit_real.serial.log")  # QEMU writes in our state dir
            host.ok("systemctl stop qat-handler", timeout=120)
            assert host.show("Result")["Result"] == "success"
            log = host.journal(30)
            assert "unit_real destroyed after 5 s: the guest did not power off within its 5 s grace period" in log
            assert "all guests are off" in log
            assert "shut off" in host.ok("virsh -c qemu:///system domstate unit_real")
        finally:
            host.ok("rm -f /etc/qat-handler/vmis/real.yaml")
