"""What the agent's own work per VMI costs between libvirt calls, against the same work alone.

    python bench/interleaved.py                     # on a private libvirtd, 1,000 VMIs, 3 rounds
    python bench/interleaved.py --connect test+unix:///default --batch 1 --batch 16 --json

The agent's device check and planning cost two to three times more per VMI inside the agent
than in a tight loop of their own. This separates the cause. One thread, no other threads,
fresh process per variant, alternating order; for each of the 1,000 VMIs of ``scale.py``:
the fresh device check of its VF and its plan (which renders the domain XML), timed with the
thread's CPU clock, then, unless *alone*, the agent's three libvirt calls for it over the
daemon's socket (a look-up, ``defineXML``, ``create``; untimed). ``--batch N`` checks and plans
N VMIs in a row before their calls, as a worker taking N keys at once would.

A benchmark, never a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from output import emit  # noqa: E402


def child(vmi_dir: Path, host_root: Path, uri: str, batch: int) -> dict[str, Any]:
    import libvirt
    from bench_domains import remove_domains
    from process_pool import defined_xml, plan_one

    from handler.baremetal.directory_source import DirectorySource
    from handler.host.fresh_checks import FreshDeviceChecks

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    source = DirectorySource(vmi_dir)
    source.scan()
    desired = [d for key in sorted(source.keys()) if (d := source.desired(key)) is not None]
    checks = FreshDeviceChecks(host_root)
    conn = libvirt.open(uri) if batch else None
    spent = 0.0
    step = batch or len(desired)
    try:
        for start in range(0, len(desired), step):
            chunk = desired[start : start + step]
            cpu = time.thread_time()
            xmls = []
            for each in chunk:
                if checks.check(each.devices[0].bdf, each.devices[0].resource) is not None:
                    raise SystemExit(f"{each.key}: its VF was refused")
                xmls.append(defined_xml(plan_one(each)))
            spent += time.thread_time() - cpu
            if conn is not None:
                for each, xml in zip(chunk, xmls, strict=True):
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.lookupByName(each.domain_name)
                    conn.defineXML(xml).create()
    finally:
        if conn is not None:
            remove_domains(conn)
    return {"us_per_vmi": 1e6 * spent / len(desired)}


def measure(args: argparse.Namespace, uri: str, work: Path) -> dict[str, Any]:
    from workload import write_throughput_workload

    host = Path(tempfile.mkdtemp(prefix="qat-bench-interleaved-host-", dir="/dev/shm"))
    try:
        workload = write_throughput_workload(work / "scale", host, args.vmis)
        variants = [0, *args.batch]  # 0: alone, no libvirt calls
        runs: dict[int, list[float]] = {variant: [] for variant in variants}
        for round_ in range(args.repeat):
            for variant in variants if round_ % 2 == 0 else variants[::-1]:
                command = [sys.executable, __file__, "--child", str(workload.vmi_dir), str(host), uri, str(variant)]
                out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                runs[variant].append(out["us_per_vmi"])
    finally:
        shutil.rmtree(host, ignore_errors=True)
    return {"uri": uri, "vmis": args.vmis, "runs": {str(v): r for v, r in runs.items()}}


def report(result: dict[str, Any]) -> None:
    runs = result["runs"]
    print(f"device check + plan of {result['vmis']} VMIs, one thread, on {result['uri']}, "
          f"median of {len(runs['0'])} alternating rounds (thread CPU per VMI)")  # fmt: skip
    for variant, values in runs.items():
        name = "alone, no libvirt calls" if variant == "0" else f"between the calls, batches of {variant}"
        print(f"  {name:<36} {statistics.median(values):5.0f} us   (runs: {', '.join(f'{v:.0f}' for v in values)})")


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        out = child(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        print(json.dumps(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", help="a daemon's URI (default: the test driver of a private libvirtd)")
    parser.add_argument("--vmis", type=int, default=1000, help="at most 1,024")
    parser.add_argument("--batch", type=int, action="append", help="VMIs checked and planned in a row (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.batch = args.batch or [1, 16]
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qat-bench-interleaved-", dir="/var/tmp")))
        uri = args.connect
        if uri is None:
            from tests.support.private_libvirtd import private_libvirtd

            daemon = stack.enter_context(private_libvirtd(work)).uri
            uri = "test+unix:///default?socket=" + daemon.split("socket=", 1)[1]
        result = measure(args, uri, work)
    emit(result, args.json, report)


if __name__ == "__main__":
    main()
