"""P2: the latency the agent adds per VMI in a burst (manifest written -> domain started).

    python bench/latency.py [--burst 200] [--rate 0] [--json]
    python bench/latency.py --connect test+unix:///default --private-libvirtd

``--rate 0`` (the default) writes the whole burst at once, so the later VMIs wait for the
earlier ones and the percentiles include queueing; ``--rate R`` paces the manifests at R per
second, so each figure is the agent's own per-VMI latency. Both are reported by default.
``--resync-vmis N`` adds a third run: paced at 50/s while the agent also manages N other
(device-less) VMIs and resyncs all of them every second, as its periodic resync does once a
minute, so every new VMI arrives during a resync sweep.

The agent runs in this process on ``test:///default`` (the test driver's state is per
process, so a second connection here sees the agent's domains) with a simulated 1,024-VF
host on tmpfs; with ``--connect test+unix:///default``, on the same driver inside libvirtd,
whose connections share it too. Once it is idle, the burst writes N manifests with their env files, each
made visible by an atomic rename, and records when each became visible. A lifecycle-event
callback on a second connection records when each domain STARTED. Latency = started - visible.

Baseline, same run, same process, same XMLs (rendered by the agent's renderer): a bare
``defineXML`` + ``create`` loop, each VMI's latency being the time from the loop reaching it
to its STARTED event. The same loop also gives the floor for a burst written all at once:
the time from the loop's start to each VMI's STARTED event, i.e. the queueing that even a
bare loop cannot avoid. For the all-at-once run the report adds the agent's latency minus
that floor, VMI by VMI in burst order ("added over bare burst"). A benchmark, never a test:
nothing asserts; the goal is p95 <= 20 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import libvirt
import yaml
from bench_domains import bench_domains, remove_domains
from daemon_uri import on_daemon_of
from workload import NAMESPACE, RESOURCE, build_host, manifest_text

from handler.baremetal.manifest_file import default_uid
from handler.baremetal.node import BareMetalNode
from handler.cli.common import agent_owner
from handler.core.device_env import AssignedDevice
from handler.core.domain_xml import render_domain
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.ops.logs import configure_logging
from handler.settings import AgentSettings
from handler.virt.event_loop import ensure_event_loop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' private libvirtd serves here too
from tests.support.private_libvirtd import private_libvirtd

GOAL_P95_MS = 20.0


class StartClock:
    """Records when each domain of ours sends STARTED, on the agent's own event loop thread."""

    def __init__(self, connection: libvirt.virConnect, prefix: str) -> None:
        self.started: dict[str, float] = {}
        self._prefix = prefix
        self._lock = threading.Lock()
        self._id = connection.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, None)
        self._connection = connection

    def _event(self, _conn: object, domain: libvirt.virDomain, event: int, _detail: int, _opaque: object) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED and domain.name().startswith(self._prefix):
            with self._lock:
                self.started.setdefault(domain.name(), time.monotonic())

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.started) >= count:
                    return True
            time.sleep(0.002)
        return False

    def close(self) -> None:
        self._connection.domainEventDeregisterAny(self._id)
        self._connection.close()


def require_clean_driver(uri: str) -> None:
    """Every run starts with none of the bench's domains: a run that inherited some would have
    its agent adopt and tear them down (and find their VFs taken) while it is being timed."""
    connection = libvirt.open(uri)
    try:
        left = [dom.name() for dom in bench_domains(connection)]
    finally:
        connection.close()
    if left:
        raise SystemExit(f"{uri} still has {len(left)} domains of an earlier run, e.g. {left[0]}")


def clear_driver(uri: str) -> None:
    """Remove a run's domains, so the next run starts on an empty driver: the driver's state
    lives as long as any connection to it (in libvirtd, that may be another's)."""
    connection = libvirt.open(uri)
    try:
        remove_domains(connection)
    finally:
        connection.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": ordered[len(ordered) // 2] * 1000, "p95": cut[94] * 1000, "p99": cut[98] * 1000}


def agent_burst(work: Path, host_root: Path, burst: int, rate: float, uri: str, others: int = 0) -> list[float]:
    """Each VMI's latency in seconds, in burst order."""
    require_clean_driver(uri)
    vfs = build_host(host_root)
    vmi_dir, state = work / "vmis", work / "state"
    vmi_dir.mkdir()
    for index in range(others):  # already there when the agent starts; no devices
        (vmi_dir / f"other-{index:04d}.yaml").write_text(manifest_text(f"other-{index:04d}", "64Mi", with_qat=False))
    settings = AgentSettings(
        connect=uri,
        vmi_dir=vmi_dir,
        state_dir=state,
        host_root=host_root,
        render=RenderSettings(log_dir=str(state / "logs"), templates=load_templates(), owner=agent_owner(state, None)),
        on_stop="keep",
        log_level="warning",
    )
    node = BareMetalNode(settings, FreshDeviceChecks(host_root))
    node.start()
    if others and not node.wait_synced(120):
        raise SystemExit(f"the {others} other VMIs did not settle within 120 s")
    clock = StartClock(libvirt.open(uri), f"{NAMESPACE}_burst-")
    visible: dict[str, float] = {}
    sweeping = threading.Event()
    sweeper = threading.Thread(target=_resync_every_second, args=(node, sweeping), daemon=True)
    try:
        if others:
            sweeper.start()
        staging = work / "staging"
        staging.mkdir()
        for index in range(burst):
            name = f"burst-{index:03d}"
            (staging / f"{name}.env").write_text(f"QAT0={vfs[index]}\n")
            (staging / f"{name}.yaml").write_text(manifest_text(name, "64Mi", with_qat=True))
        for index in range(burst):
            name = f"burst-{index:03d}"
            os.rename(staging / f"{name}.env", vmi_dir / f"{name}.env")  # the env file first, as an operator would
            os.rename(staging / f"{name}.yaml", vmi_dir / f"{name}.yaml")
            visible[f"{NAMESPACE}_{name}"] = time.monotonic()
            if rate > 0:
                time.sleep(1 / rate)
        if not clock.wait(burst, timeout=120):
            raise SystemExit(f"only {len(clock.started)} of {burst} guests started within 120 s")
        return [clock.started[name] - at for name, at in visible.items()]
    finally:
        sweeping.set()
        clock.close()
        node.shutdown(StopPolicy.KEEP)
        clear_driver(uri)


def _resync_every_second(node: BareMetalNode, stop: threading.Event) -> None:
    while True:
        node.engine.resync()
        if stop.wait(1.0):
            return


def baseline_burst(host_root: Path, burst: int, uri: str) -> tuple[list[float], list[float]]:
    """Each VMI's latency from the loop reaching it, and from the loop's start, in burst order."""
    require_clean_driver(uri)
    vfs = build_host(host_root)
    settings = RenderSettings(log_dir="/var/tmp/qat-bench-logs", templates=load_templates())
    xmls = []
    for index in range(burst):
        name = f"base-{index:03d}"
        vmi = parse_vmi(yaml.safe_load(manifest_text(name, "64Mi", True)), default_uid=default_uid(NAMESPACE, name))
        device = AssignedDevice("qat0", RESOURCE, vfs[index], "QAT0")
        xmls.append((f"{NAMESPACE}_{name}", render_domain(vmi, (device,), settings)))
    connection = libvirt.open(uri)
    clock = StartClock(libvirt.open(uri), f"{NAMESPACE}_base-")
    reached: dict[str, float] = {}
    try:
        begun = time.monotonic()
        for name, xml in xmls:
            reached[name] = time.monotonic()
            connection.defineXML(xml).create()
        if not clock.wait(burst, timeout=60):
            raise SystemExit(f"the bare loop saw only {len(clock.started)} of {burst} STARTED events")
        per_call = [clock.started[name] - at for name, at in reached.items()]
        return per_call, [clock.started[name] - begun for name in reached]
    finally:
        clock.close()
        connection.close()
        clear_driver(uri)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--rate", type=float, action="append", help="manifests per second; 0: all at once")
    parser.add_argument("--resync-vmis", type=int, default=0, help="other VMIs resynced every second (third run)")
    parser.add_argument(
        "--connect",
        default="test:///default",
        help="libvirt URI: test+unix:///default is the same test driver inside libvirtd, over its socket",
    )
    parser.add_argument(
        "--private-libvirtd",
        action="store_true",
        help="with a +unix --connect: a libvirtd of the bench's own (private mount namespace, own state dirs)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rates = args.rate or [0.0, 50.0]
    sys.stdout.flush()
    real_stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115
    configure_logging("json", "info")  # as in production, but to /dev/null
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    ensure_event_loop()  # the agent's own loop; both connections here deliver through it
    work = Path(tempfile.mkdtemp(prefix="qat-bench-latency-", dir="/var/tmp"))
    # The simulated hosts live in memory, as sysfs does, in one folder removed at the end.
    host_parent = Path(
        tempfile.mkdtemp(prefix="qat-bench-latency-hosts-", dir="/dev/shm" if Path("/dev/shm").is_dir() else work)
    )
    agents: dict[str, list[float]] = {}
    stack = contextlib.ExitStack()
    try:
        uri = args.connect
        if args.private_libvirtd:
            uri = on_daemon_of(uri, stack.enter_context(private_libvirtd(work)).uri)
        per_call, bare_burst = baseline_burst(Path(tempfile.mkdtemp(dir=host_parent)), args.burst, uri)
        for rate in rates:
            run_dir = work / f"rate-{rate:g}"
            run_dir.mkdir()
            agents[f"{rate:g}"] = agent_burst(run_dir, Path(tempfile.mkdtemp(dir=host_parent)), args.burst, rate, uri)
        if args.resync_vmis:
            run_dir = work / "resync"
            run_dir.mkdir()
            host = Path(tempfile.mkdtemp(dir=host_parent))
            agents["50+resync"] = agent_burst(run_dir, host, args.burst, 50.0, uri, args.resync_vmis)
    finally:
        stack.close()
        sys.stdout = real_stdout
        shutil.rmtree(host_parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    figures_by_rate = {rate: percentiles(latencies) for rate, latencies in agents.items()}
    if "0" in agents:  # all at once: what the agent adds over a bare loop given the same burst
        figures_by_rate["0-bare"] = percentiles([a - b for a, b in zip(agents["0"], bare_burst, strict=True)])
    baseline = {"per_vmi": percentiles(per_call), "all_at_once": percentiles(bare_burst)}
    report = {
        "burst": args.burst,
        "connect": uri,
        "agent_ms_by_rate": figures_by_rate,
        "baseline_ms": baseline,
        "goal_p95_ms": GOAL_P95_MS,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"P2 burst of {args.burst} on {uri}: manifest visible -> domain STARTED (ms)")
    rows = [(_label(rate, args.resync_vmis), f) for rate, f in figures_by_rate.items()]
    bare_rows = [
        ("bare define+create, per VMI", baseline["per_vmi"]),
        ("bare loop, all at once", baseline["all_at_once"]),
    ]
    for label, figures in [*rows, *bare_rows]:
        print(f"  {label:<30} " + "  ".join(f"{k} {v:8.1f}" for k, v in figures.items()))
    for label, figures in rows:
        verdict = "met" if figures["p95"] <= GOAL_P95_MS else "missed"
        print(f"  goal p95 <= {GOAL_P95_MS:.0f} ms ({label}): {verdict}")
    return 0


def _label(rate: str, others: int) -> str:
    if rate == "0-bare":
        return "agent adds over bare burst"
    if rate == "50+resync":
        return f"agent, 50/s, resyncing {others}"
    return f"agent, {'all at once' if rate == '0' else rate + '/s'}"


if __name__ == "__main__":
    sys.exit(main())
