"""qat-handler at scale: throughput, memory and restart, each beside a baseline from the same run.

    python bench/scale.py                  # 1,000 VMIs on test:///default, then the restart on qemu:///system
    python bench/scale.py --skip-restart   # no libvirtd needed
    python bench/scale.py --json
    python bench/scale.py --skip-restart --throughput-connect test+unix:///default --private-libvirtd

A benchmark, never a test: nothing here asserts. Each result is printed with its target and
its ratio to a baseline measured in the same run on the same machine. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import libvirt
import machine
import restart
import throughput
from daemon_uri import on_daemon_of, through_daemon
from workload import write_plain_workload, write_throughput_workload

from handler.settings import AgentSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' private libvirtd serves here too
from tests.support.private_libvirtd import private_libvirtd

TARGET_SECONDS = 1.0
TARGET_PEAK_MB = 120.0
TARGET_RESTART_SECONDS = 3.0


def main() -> int:
    args = _parser().parse_args()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are reported as exceptions
    work = Path(tempfile.mkdtemp(prefix="qat-bench-", dir=args.work_dir))
    host_parent = Path("/dev/shm") if Path("/dev/shm").is_dir() else work
    host_root = Path(tempfile.mkdtemp(prefix="qat-bench-host-", dir=host_parent))
    try:
        with contextlib.ExitStack() as stack:
            uri = None if args.skip_restart else args.restart_connect
            throughput_uri = args.throughput_connect
            if args.private_libvirtd and (uri is not None or through_daemon(throughput_uri)):
                private = stack.enter_context(private_libvirtd(work)).uri
                if uri is not None:
                    uri = private
                throughput_uri = on_daemon_of(throughput_uri, private)
            report = run(args, work, host_root, uri, throughput_uri)
        print(json.dumps(report, indent=2) if args.json else _summary_text(report))
    except KeyboardInterrupt:
        print("interrupted; agents stopped and benchmark domains removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(host_root, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run(
    args: argparse.Namespace, work: Path, host_root: Path, restart_uri: str | None, throughput_uri: str
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine.describe(restart_uri),
        "restart_uri": restart_uri,
        "throughput_uri": throughput_uri,
    }
    if not args.json:
        print(f"machine: {machine.summary_line(report['machine'])}", flush=True)
    workload = write_throughput_workload(work / "scale", host_root, args.vmis)
    report["throughput"] = []
    for workers in args.workers:
        for attempt in range(args.repeat):
            run_dir = work / f"run-w{workers}-{attempt}"
            run_dir.mkdir()
            shutil.rmtree(workload.state_dir, ignore_errors=True)
            result = throughput.measure(workload, run_dir, workers, throughput_uri)
            report["throughput"].append(asdict(result))
            if not args.json:
                _print_run(result)
    if restart_uri is not None:
        plain = write_plain_workload(work / "restart", args.restart_vmis)
        try:
            report["restart"] = asdict(restart.measure(plain, work / "restart", restart_uri, args.restart_wait))
        except restart.SharedLibvirt as error:
            report["restart_skipped"] = str(error)
    report["summary"] = summarise(report, args.workers[0])
    return report


def summarise(report: dict[str, Any], workers: int) -> dict[str, Any]:
    """The median run's figures (by agent time, for the first worker count) and whether each target is met."""
    everything = report["throughput"]
    runs = sorted((run for run in everything if run["workers"] == workers), key=lambda run: run["agent_seconds"])
    median = runs[(len(runs) - 1) // 2]
    summary: dict[str, Any] = {
        "median_seconds_by_workers": {
            count: statistics.median(run["agent_seconds"] for run in everything if run["workers"] == count)
            for count in sorted({run["workers"] for run in everything})
        },
        "runs": len(runs),
        "workers": median["workers"],
        "agent_seconds": median["agent_seconds"],
        "baseline_seconds": median["baseline_seconds"],
        "ratio": median["agent_seconds"] / median["baseline_seconds"],
        "ratio_spread": [min(_ratio(r) for r in runs), max(_ratio(r) for r in runs)],
        "vmis_per_second": median["vmis"] / median["agent_seconds"],
        "agent_cpu_seconds": median["agent_cpu_seconds"],
        "baseline_cpu_seconds": median["baseline_cpu_seconds"],
        "events_baseline_seconds": median["events_baseline_seconds"],
        "events_ratio": median["agent_seconds"] / median["events_baseline_seconds"],
        "events_baseline_cpu_seconds": median["events_baseline_cpu_seconds"],
        "reading_seconds": median["reading_seconds"],
        "throughput_met": median["agent_seconds"] <= TARGET_SECONDS,
        "peak_mb": _mb(max(run["agent_peak_kib"] for run in runs)),
        "import_floor_mb": _mb(statistics.median(run["import_peak_kib"] for run in runs)),
        "baseline_loop_peak_mb": _mb(statistics.median(run["baseline_peak_kib"] for run in runs)),
    }
    summary["memory_ratio"] = summary["peak_mb"] / summary["import_floor_mb"]
    summary["memory_met"] = summary["peak_mb"] <= TARGET_PEAK_MB
    if "restart" in report:
        r = report["restart"]
        summary["restart_seconds"] = r["steady_seconds"]
        summary["restart_ratio"] = r["steady_from_cli_seconds"] / r["baseline_seconds"]
        summary["restart_met"] = (
            r["steady_seconds"] <= TARGET_RESTART_SECONDS
            and not r["ids_changed"]
            and not r["events"]
            and not r["not_running"]
        )
    return summary


def _print_run(run: throughput.Throughput) -> None:
    print(
        f"  run: workers={run.workers} agent {run.agent_seconds:.3f} s (reading manifests "
        f"{_seconds(run.reading_seconds)}, "
        f"from spawn {run.process_seconds:.3f} s), "
        f"bare loop {run.baseline_seconds:.3f} s, ratio {_ratio(asdict(run)):.1f}x, "
        f"CPU {run.agent_cpu_seconds:.2f} s vs {run.baseline_cpu_seconds:.2f} s, "
        f"peak RSS {_mb(run.agent_peak_kib):.1f} MB",
        flush=True,
    )


def _summary_text(report: dict[str, Any]) -> str:
    s = report["summary"]
    runs = report["throughput"]
    lines = [
        "",
        f"throughput ({runs[0]['vmis']} VMIs, one VF each, {report['throughput_uri']}, agent in its own process;"
        f" median of {s['runs']}):",
        f"  agent start -> all Running on disk   {s['agent_seconds']:.3f} s   ({s['vmis_per_second']:.0f} VMIs/s)",
        f"  bare libvirt define+start loop       {s['baseline_seconds']:.3f} s",
        f"  ratio                                {s['ratio']:.1f}x   (runs: {s['ratio_spread'][0]:.1f}x"
        f" .. {s['ratio_spread'][1]:.1f}x)",
        f"  agent CPU (all threads, its listener too) vs bare loop {s['agent_cpu_seconds']:.2f} s"
        f" vs {s['baseline_cpu_seconds']:.2f} s",
        f"  bare loop listening for events       {s['events_baseline_seconds']:.3f} s,"
        f" {s['events_baseline_cpu_seconds']:.2f} CPU-s   (agent ratio to it {s['events_ratio']:.1f}x)",
        f"  of the agent time, reading manifests {_seconds(s['reading_seconds'])} (before the first reconcile)",
        "  median by workers                    "
        + ", ".join(f"{count}: {sec:.3f} s" for count, sec in s["median_seconds_by_workers"].items()),
        f"  target <= {TARGET_SECONDS:.1f} s (for 1,000 VMIs): "
        + (_verdict(s["throughput_met"]) if runs[0]["vmis"] == 1000 else "not applicable to this --vmis"),
        "memory (agent peak RSS, VmHWM, after first sync and a full SIGHUP re-read):",
        f"  agent                                {s['peak_mb']:.1f} MB",
        f"  python + import libvirt, lxml        {s['import_floor_mb']:.1f} MB   (ratio {s['memory_ratio']:.1f}x)",
        f"  bare loop holding the same domains   {s['baseline_loop_peak_mb']:.1f} MB",
        f"  target <= {TARGET_PEAK_MB:.0f} MB: {_verdict(s['memory_met'])}",
    ]
    if "restart_skipped" in report:
        lines.append(f"restart: not measured: {report['restart_skipped']}")
    if "restart" in report:
        r = report["restart"]
        lines += [
            f"restart ({r['domains']} idle guests on {report['restart_uri']}, --on-stop keep, new agent on the"
            " same state):",
            f"  new agent spawn -> READY=1           {r['steady_seconds']:.3f} s"
            f"   (from CLI start {r['steady_from_cli_seconds']:.3f} s)",
            f"  bare open + list + state + metadata  {r['baseline_seconds']:.3f} s"
            f"   (ratio to the CLI-start figure {s['restart_ratio']:.1f}x)",
            f"  domain IDs changed                   {len(r['ids_changed'])}",
            f"  lifecycle events during hand-over    {len(r['events'])}   {', '.join(r['events'][:5])}",
            f"  VMIs not Running after               {len(r['not_running'])}",
            f"  old agent stop                       {r['stop_seconds']:.3f} s;"
            f" first start of {r['domains']} guests {r['first_start_seconds']:.1f} s"
            f" (bare define+start loop of the same XMLs {r['bare_start_seconds']:.1f} s)",
            f"  target <= {TARGET_RESTART_SECONDS:.0f} s, nothing touched: {_verdict(s['restart_met'])}",
        ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _ratio(run: dict[str, Any]) -> float:
    return float(run["agent_seconds"] / run["baseline_seconds"])


def _mb(kib: float) -> float:
    return kib * 1024 / 1e6


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vmis", type=int, default=1000, help="VMIs for throughput and memory (at most 1,024)")
    parser.add_argument(
        "--workers",
        type=_int_list,
        default=[AgentSettings().workers],
        help="agent reconcile threads; a comma list (1,4) runs each",
    )
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per worker count (median reported)")
    parser.add_argument("--skip-restart", action="store_true", help="skip the part that needs qemu:///system")
    parser.add_argument("--restart-vmis", type=int, default=100, help="idle guests for the restart part")
    parser.add_argument("--restart-connect", default="qemu:///system", help="libvirt URI for the restart part")
    parser.add_argument(
        "--throughput-connect",
        default=throughput.URI,
        help="libvirt URI for throughput and memory: test+unix:///default is the same test driver inside "
        "libvirtd, reached over its socket as a deployed agent reaches libvirt",
    )
    parser.add_argument(
        "--private-libvirtd",
        action="store_true",
        help="run the restart part (and a +unix --throughput-connect) on a libvirtd of its own (system mode, "
        "own state dirs, private mount namespace), so other users of the system daemon are never touched",
    )
    parser.add_argument(
        "--restart-wait",
        type=float,
        default=300.0,
        help="seconds to wait for another qat-handler's domains (a test run) to leave that libvirtd",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/var/tmp"),
        help="where manifests and state go (on disk: the status file is fsynced)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of every agent)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    return parser


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


if __name__ == "__main__":
    sys.exit(main())
