"""Parts 1 and 2: 1,000 VMIs from agent start to all Running (durably), and the agent's peak RSS.

Everything runs in fresh child processes, so each one gets its own empty ``test:///default``:
the bare libvirt loop (the floor), a bare ``import libvirt, lxml`` (the memory floor) and
the agent itself, run through its real CLI. The parent only watches the status file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from processes import StatusFile, cpu_seconds, peak_rss_kib, stop, wait_cpu_idle
from workload import NAMESPACE, Workload, render_all

from handler.cli.agent_cmd import settings_from
from handler.cli.main import build_parser
from handler.settings import AgentSettings

HERE = Path(__file__).resolve().parent
URI = "test:///default"
"""In this process's own libvirt library. ``test+unix:///default`` is the same driver inside
libvirtd, reached over its socket as a deployed agent reaches libvirt (``--throughput-connect``)."""
FIRST_PASS_EVENT = "adopted existing domains"
"""Logged by the engine as it starts its workers, after every manifest has been read."""


@dataclass(frozen=True, slots=True)
class Throughput:
    vmis: int
    agent_seconds: float
    """From the CLI's start (imports done) to every VMI Running in the status file on disk."""
    process_seconds: float
    """The same, but from process spawn: interpreter start-up and imports included."""
    baseline_seconds: float
    agent_cpu_seconds: float
    """CPU time (all threads, user + system) the agent used over ``agent_seconds``: less
    sensitive than wall time to other load on the machine."""
    baseline_cpu_seconds: float
    events_baseline_seconds: float
    """The bare loop again, listening for lifecycle events as any event-driven agent must."""
    events_baseline_cpu_seconds: float
    agent_peak_kib: int
    """VmHWM after the first sync and a full SIGHUP re-read of every manifest."""
    baseline_peak_kib: int
    """The bare loop's peak: python + libvirt + the test driver holding the same domains."""
    import_peak_kib: int
    """A bare ``python -c 'import libvirt, lxml.etree'``."""
    workers: int
    reading_seconds: float | None
    """Of ``agent_seconds``, the part before the first reconcile: connecting, reading every
    manifest and env file, adopting existing domains (from the agent's own log; None if absent)."""


@dataclass(frozen=True, slots=True)
class _AgentRun:
    seconds: float
    from_spawn: float
    cpu_seconds: float
    peak_kib: int
    reading_seconds: float | None


def agent_settings_args(workload: Workload, workers: int, uri: str = URI) -> list[str]:
    return [
        "--vmi-dir", str(workload.vmi_dir),
        "--connect", uri,
        "--state-dir", str(workload.state_dir),
        "--host-root", str(workload.host_root),
        "--on-stop", "keep",
        "--workers", str(workers),
        "--log-format", "json",
    ]  # fmt: skip


def agent_settings(agent_args: list[str]) -> AgentSettings:
    """The settings the agent CLI builds from these flags, so the bare loop defines the same XML."""
    return settings_from(build_parser().parse_args(["agent", *agent_args]))


def measure(workload: Workload, work: Path, workers: int, uri: str = URI) -> Throughput:
    baseline = bare_loop(workload, work / "xml", uri=uri)
    with_events = bare_loop(workload, work / "xml", events=True, uri=uri)
    agent = run_agent(workload, work / "agent.log", workers, uri)
    return Throughput(
        vmis=len(workload.names),
        agent_seconds=agent.seconds,
        process_seconds=agent.from_spawn,
        baseline_seconds=baseline["seconds"],
        agent_cpu_seconds=agent.cpu_seconds,
        baseline_cpu_seconds=baseline["cpu_seconds"],
        events_baseline_seconds=with_events["seconds"],
        events_baseline_cpu_seconds=with_events["cpu_seconds"],
        agent_peak_kib=agent.peak_kib,
        baseline_peak_kib=int(baseline["peak_rss_kib"]),
        import_peak_kib=import_floor_kib(),
        workers=workers,
        reading_seconds=agent.reading_seconds,
    )


def bare_loop(workload: Workload, xml_dir: Path, events: bool = False, uri: str = URI) -> dict[str, float]:
    """The bare loop in a fresh process over the agent's XMLs (rendered into ``xml_dir`` once)."""
    if not xml_dir.exists():
        xml_dir.mkdir()
        render = agent_settings(agent_settings_args(workload, 1)).render
        for name, xml in zip(workload.names, render_all(workload, render), strict=True):
            (xml_dir / f"{name}.xml").write_text(xml)
    command = [sys.executable, str(HERE / "baseline_loop.py"), uri, str(xml_dir), *(["--events"] if events else [])]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def import_floor_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report our own RSS.
    code = "import libvirt, lxml.etree, re; print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def run_agent(workload: Workload, log_path: Path, workers: int, uri: str = URI) -> _AgentRun:
    """Time one agent process from its start to every VMI Running on disk, then read its peak RSS."""
    keys = {f"{NAMESPACE}/{name}" for name in workload.names}
    status = StatusFile(workload.state_dir / "status.json")
    start_file = log_path.with_suffix(".start")
    with log_path.open("wb") as log:
        spawned = time.monotonic()
        agent_args = agent_settings_args(workload, workers, uri)
        child = subprocess.Popen(
            [sys.executable, str(HERE / "agent_child.py"), str(start_file), *agent_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            running_at = status.wait_running(keys, child, timeout=120)
            cpu_at_running = cpu_seconds(child.pid)
            wait_cpu_idle(child.pid)
            child.send_signal(signal.SIGHUP)  # a full re-read of every manifest while managing them all
            time.sleep(0.5)
            wait_cpu_idle(child.pid)
            peak = peak_rss_kib(child.pid)
        finally:
            stop(child)
    started, wall_started, cpu_started = map(float, start_file.read_text().split())
    first_pass = first_log_time(log_path, FIRST_PASS_EVENT)
    reading = first_pass - wall_started if first_pass is not None else None
    return _AgentRun(running_at - started, running_at - spawned, cpu_at_running - cpu_started, peak, reading)


def first_log_time(log_path: Path, event: str) -> float | None:
    """Wall-clock time of the first JSON log line with this event."""
    for line in log_path.read_text(errors="replace").splitlines():
        if event in line and line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event and "timestamp" in record:
                return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
    return None
