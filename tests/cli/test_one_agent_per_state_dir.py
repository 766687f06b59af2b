"""One agent per state directory, through the CLI: a second `qat-handler agent` on the same
--state-dir (one started by hand beside the service, say) is refused in one line naming the
directory, the holder's pid and the fix, before it reads or touches anything; once the first
agent is gone, even by `kill -9`, the next one starts."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.cli.bare_agent import REPO, BareAgent, write_manifests


def second_agent(tmp_path: Path, vmis: Path, state: Path) -> subprocess.CompletedProcess[str]:
    argv = ["agent", "--connect", "test:///default", "--vmi-dir", str(vmis), "--state-dir", str(state)]
    argv += ["--host-root", str(tmp_path / "host"), "--log-format", "json"]
    return subprocess.run(
        [sys.executable, "-m", "handler", *argv], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_a_second_agent_on_the_same_state_dir_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    vmis = write_manifests(tmp_path / "vmis", "only")
    first = BareAgent(tmp_path, vmis)
    try:
        first.wait_phases({"edge/only": "Running"}, "the first agent's guest")
        refused = second_agent(tmp_path, vmis, first.state)
        assert refused.returncode == 2  # as every start-up refusal
        assert refused.stdout == ""
        assert refused.stderr == (
            f"qat-handler: --state-dir {first.state} is in use by another qat-handler agent "
            f"(pid {first.process.pid}); fix: stop that agent (systemctl stop qat-handler), "
            "or give this one its own --state-dir and --vmi-dir\n"
        )
        assert first.process.poll() is None and first.phases() == {"edge/only": "Running"}
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        again = BareAgent(tmp_path / "again", vmis, state=first.state)  # the lock went with the process
        try:
            again.wait_for("the next agent to start", lambda: any('"agent started"' in x for x in again.lines()))
        finally:
            again.stop()
    finally:
        first.stop()
