"""Would a process pool take planning and rendering off the agent's interpreter? (P1 of issue 11)

    python bench/process_pool.py                       # 1,000 plans, 5 rounds, 4 threads, 1 process
    python bench/process_pool.py --vmis 500 --repeat 3 --processes 2 --json

The agent's reconcile workers share one interpreter, so its throughput follows the CPU its own
threads spend per VMI. Planning a new guest (``core.planner.plan``, which renders the domain
XML) is pure, so it could run in other processes. That pays only if the CPU the pool takes
off the agent is more than the CPU it costs the agent to hand each plan over and take the
answer back (pickling, the executor's queue thread, the result's wake-up).

Each round runs two children, in a fresh process each and in alternating order, on the 1,000
VMIs of ``scale.py`` (their VFs from the env files, no domain yet, as a first sync sees them):

* *inline*: ``--threads`` threads make the plans, as the agent's workers do today;
* *pool*: the same threads hand each plan to a ``ProcessPoolExecutor`` of ``--processes``
  (forkserver, settings and templates built once in each process, one plan per process made
  before timing) and wait for it, as a worker would.

Reported per variant: the calling process's CPU (all its threads; the pool's processes are not
in it), the pool's processes' CPU (from /proc, in clock ticks), and wall time. Both variants must plan the same XML
(reported, never asserted). A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from output import emit  # noqa: E402

from handler.core.actions import DefineDomain  # noqa: E402
from handler.core.desired import Desired, Observed  # noqa: E402
from handler.core.planner import Plan, PlanSettings, plan  # noqa: E402
from handler.core.render_settings import RenderSettings  # noqa: E402
from handler.host.domain_templates import load_templates  # noqa: E402
from handler.settings import AgentSettings  # noqa: E402

FIRST_SYNC = Observed(None, None, None, 0.0)
"""No domain, no status yet: what the agent observes for a new VMI."""
_settings: PlanSettings | None = None


def settings() -> PlanSettings:
    """The agent's plan settings (bench owner, test domains), built once per process."""
    global _settings
    if _settings is None:
        render = RenderSettings(domain_type="test", owner="bench", templates=load_templates())
        _settings = AgentSettings(render=render).plan_settings()
    return _settings


def plan_one(desired: Desired) -> Plan:
    return plan(desired, FIRST_SYNC, settings())


def defined_xml(result: Plan) -> str:
    return next(action.xml for action in result.actions if isinstance(action, DefineDomain))


def child(mode: str, vmi_dir: Path, threads: int, processes: int) -> dict[str, Any]:
    from processes import cpu_seconds

    from handler.baremetal.directory_source import DirectorySource

    source = DirectorySource(vmi_dir)
    source.scan()
    desired = [d for key in sorted(source.keys()) if (d := source.desired(key)) is not None]
    settings()
    pool: Executor | None = None
    if mode == "pool":
        pool = ProcessPoolExecutor(processes, multiprocessing.get_context("forkserver"), initializer=settings)
        list(pool.map(plan_one, desired[:processes]))  # processes started, imports done
    make = plan_one if pool is None else lambda d: pool.submit(plan_one, d).result()
    pids = list(getattr(pool, "_processes", {}))  # forked by the forkserver: not our children
    children = -sum(map(cpu_seconds, pids))
    cpu, wall = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(threads) as workers:
        results = list(workers.map(make, desired))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    children += sum(map(cpu_seconds, pids))
    if pool is not None:
        pool.shutdown()
    return {"cpu": cpu, "children_cpu": children, "wall": wall, "xmls": [defined_xml(r) for r in results]}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from workload import write_throughput_workload

    work = Path(tempfile.mkdtemp(prefix="qat-bench-pool-", dir="/var/tmp"))
    host = Path(tempfile.mkdtemp(prefix="qat-bench-pool-host-", dir="/dev/shm"))
    runs: dict[str, list[dict[str, float]]] = {"inline": [], "pool": []}
    same = True
    try:
        workload = write_throughput_workload(work, host, args.vmis)
        for round_ in range(args.repeat):
            xmls = {}
            for mode in ("inline", "pool") if round_ % 2 == 0 else ("pool", "inline"):
                command = [sys.executable, __file__, "--child", mode, str(workload.vmi_dir)]
                command += [str(args.threads), str(args.processes)]
                out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                xmls[mode] = out.pop("xmls")
                runs[mode].append(out)
            same = same and xmls["inline"] == xmls["pool"] and len(xmls["inline"]) == args.vmis
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(host, ignore_errors=True)
    medians = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    return {"vmis": args.vmis, "threads": args.threads, "processes": args.processes, "runs": runs,
            "median": medians, "same_xml": same}  # fmt: skip


def report(result: dict[str, Any]) -> None:
    inline, pool = result["median"]["inline"], result["median"]["pool"]
    vmis = result["vmis"]
    print(f"{vmis} plans of new guests from {result['threads']} threads, median of {len(result['runs']['inline'])} "
          f"alternating rounds; pool of {result['processes']} process(es)")  # fmt: skip
    for name, m in (("inline", inline), ("pool", pool)):
        per = 1e6 * m["cpu"] / vmis
        print(f"  {name:<7} calling process {m['cpu']:.3f} CPU-s ({per:.0f} us a plan), "
              f"pool processes {m['children_cpu']:.3f} CPU-s, wall {m['wall']:.3f} s")  # fmt: skip
    print(f"  calling process CPU, pool / inline: {pool['cpu'] / inline['cpu']:.2f}x "
          f"(below 1 would mean the pool takes work off the agent's interpreter)")  # fmt: skip
    print(f"  same XML from both: {result['same_xml']}")


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vmis", type=int, default=1000, help="plans per round (at most 1,024)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=4, help="threads making plans, as the agent's workers")
    parser.add_argument("--processes", type=int, default=1, help="processes in the pool")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args)
    emit(result, args.json, report)


if __name__ == "__main__":
    main()
