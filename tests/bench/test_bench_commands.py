"""The README's benchmark command lines run, in-process and over libvirtd's socket.

Small sizes: these check that the commands work and measure what they say, never how fast.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_scale_runs_in_process_by_default() -> None:
    out = bench("scale.py", "--skip-restart", "--vmis", "20", "--repeat", "1")
    assert "throughput (20 VMIs, one VF each, test:///default," in out
    assert "bare libvirt define+start loop" in out and "bare loop listening for events" in out


def test_scale_runs_over_the_socket_of_a_private_libvirtd() -> None:
    out = bench(
        "scale.py", "--skip-restart", "--vmis", "20", "--repeat", "1",
        "--throughput-connect", "test+unix:///default", "--private-libvirtd",
    )  # fmt: skip
    assert "throughput (20 VMIs, one VF each, test+unix:///default?socket=" in out
    assert "ratio" in out


def test_latency_runs_each_rate_on_a_clean_driver_over_the_socket() -> None:
    """Two runs in a row on one daemon: the second must not inherit the first's guests (it used
    to adopt and tear them down, and lose guests whose VFs they still held)."""
    out = bench(
        "latency.py", "--burst", "20", "--rate", "0", "--rate", "50",
        "--connect", "test+unix:///default", "--private-libvirtd",
    )  # fmt: skip
    assert "P2 burst of 20 on test+unix:///default?socket=" in out
    assert "agent, all at once" in out and "agent, 50/s" in out and "bare loop, all at once" in out


def test_latency_runs_in_process() -> None:
    out = bench("latency.py", "--burst", "20", "--rate", "0")
    assert "P2 burst of 20 on test:///default:" in out


def test_process_pool_plans_the_same_xml_both_ways() -> None:
    """The pool variant must plan what the agent plans inline, or its CPU figure means nothing."""
    out = bench("process_pool.py", "--vmis", "200", "--repeat", "1", "--threads", "2")
    assert "200 plans of new guests from 2 threads, median of 1 alternating rounds; pool of 1 process(es)" in out
    assert "same XML from both: True" in out
    pool = next(line for line in out.splitlines() if line.lstrip().startswith("pool "))
    assert "pool processes 0.000 CPU-s" not in pool, "the pool's processes did no measured work"


def test_event_wakeups_runs_each_variant_on_a_private_libvirtd() -> None:
    out = bench("event_wakeups.py", "--guests", "20", "--repeat", "1")
    assert "20 guests on test+unix:///default?socket=" in out
    for variant in ("one connection", "events apart", "calls before loop"):
        line = next(line for line in out.splitlines() if line.strip().startswith(variant))
        assert "events seen" in line and " 0 events seen" not in line, line


def test_interleaved_times_the_work_alone_and_between_calls() -> None:
    out = bench("interleaved.py", "--vmis", "20", "--repeat", "1", "--batch", "1", "--batch", "4")
    assert "device check + plan of 20 VMIs, one thread, on test+unix:///default?socket=" in out
    for name in ("alone, no libvirt calls", "between the calls, batches of 1", "between the calls, batches of 4"):
        assert name in out


def test_startup_times_each_command_beside_a_bare_interpreter() -> None:
    out = bench("startup.py", "--rounds", "1")
    assert "CLI start-up, median of 1 alternating rounds" in out
    assert "python -c pass" in out and "qat-handler launcher (refuses: no VMI) [this tree]" in out
