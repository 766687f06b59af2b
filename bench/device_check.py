"""CPU of the agent's fresh device check: 1,000 checks of distinct VFs on the simulated host.

    python bench/device_check.py                                 # 1,000 checks, 5 rounds, median
    python bench/device_check.py --tree /tmp/copy-of-main        # and an older tree, alternating
    python bench/device_check.py --checks 500 --repeat 7 --threads 4 --json

The simulated 1,024-VF host of ``scale.py`` (``workload.build_host``) is built once on tmpfs.
Each round runs, in a fresh process each and in alternating order:

* *this tree*: a new ``FreshDeviceChecks`` (as an agent starts with), then one ``check`` per
  VF, each VF once (what the agent does per VMI); then the same VFs a second time (*again*).
* *syscalls*: the baseline, the same process work without the checker: for each VF the system
  calls a fresh check cannot do without (the bus entry's link and the device directory, the
  three ID files, the driver, physfn and IOMMU group links, the group directory and its
  listing, the VFIO node, the vfio-pci module directory and its denylist parameter), made
  with plain ``os`` calls on paths built inline. Its time is the floor the check can approach.
* *--tree PATH*: the same as *this tree* with ``PYTHONPATH=PATH``, e.g. a copy of main from
  before a change, so the two are compared in the same run; the speed-up is the median of each
  round's ratio (its two runs are neighbours in time), and best against best.

``--threads N`` shares the checks among N threads started together, as the agent's workers
share them (every variant alike); the GIL hand-offs at each system call then dominate.

Only the loops are timed (``time.process_time`` in the child). Every tree must give the same
verdicts (reported, never asserted). A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from output import emit

RESOURCE = "qat.intel.com/generic"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def child_checks(host_root: str, vfs: list[str], threads: int) -> dict[str, Any]:
    """In the child: one new checker, each VF checked once, then each again."""
    import handler
    from handler.core.bdf import parse_bdf
    from handler.host.fresh_checks import FreshDeviceChecks

    bdfs = [parse_bdf(vf) for vf in vfs]
    started = time.process_time()
    checks = FreshDeviceChecks(Path(host_root))
    first = in_threads(lambda bdf: checks.check(bdf, RESOURCE), bdfs, threads)
    middle = time.process_time()
    again = in_threads(lambda bdf: checks.check(bdf, RESOURCE), bdfs, threads)
    ended = time.process_time()
    verdicts = [None if refusal is None else refusal.line() for refusal in first + again]
    source = str(Path(handler.__file__).parent.parent)
    return {"first": middle - started, "again": ended - middle, "verdicts": verdicts, "source": source}


def in_threads(check: Callable[[Any], Any], items: list[Any], threads: int) -> list[Any]:
    """``check`` of every item, in order; with several threads (as the agent's workers), each
    takes every n-th item, all starting together."""
    if threads == 1:
        return [check(item) for item in items]
    results: list[Any] = [None] * len(items)
    start = threading.Barrier(threads)

    def work(first: int) -> None:
        start.wait()
        for index in range(first, len(items), threads):
            results[index] = check(items[index])

    workers = [threading.Thread(target=work, args=(first,)) for first in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def child_syscalls(host_root: str, vfs: list[str], threads: int) -> dict[str, Any]:
    """In the child: the system calls of one fresh check per VF, bare."""
    root = os.path.realpath(host_root)
    started = time.process_time()
    in_threads(lambda vf: bare_check(root, vf), vfs, threads)
    return {"first": time.process_time() - started, "again": None, "verdicts": None}


def bare_check(root: str, vf: str) -> None:
    """The system calls a fresh check of ``vf`` cannot do without, with plain ``os`` calls."""
    devices = f"{root}/sys/bus/pci/devices"
    real = os.path.normpath(os.path.join(devices, os.readlink(f"{devices}/{vf}")))
    os.lstat(real)
    for name in ("vendor", "device", "class"):
        fd = os.open(f"{real}/{name}", os.O_RDONLY | os.O_NOFOLLOW)
        os.read(fd, 4096)
        os.close(fd)
    os.readlink(f"{real}/driver")
    os.readlink(f"{real}/physfn")
    group = os.path.normpath(os.path.join(real, os.readlink(f"{real}/iommu_group")))
    os.lstat(group)
    os.lstat(f"{group}/devices")
    os.listdir(f"{group}/devices")
    os.lstat(f"{root}/dev/vfio/{os.path.basename(group)}")
    os.lstat(f"{root}/sys/module/vfio_pci")
    fd = os.open(f"{root}/sys/module/vfio_pci/parameters/disable_denylist", os.O_RDONLY | os.O_NOFOLLOW)
    os.read(fd, 4096)
    os.close(fd)


def run_child(variant: str, tree: Path | None, host_root: Path, vfs: list[str], threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant, str(host_root), str(threads)]
    done = subprocess.run(command, input=json.dumps(vfs), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from workload import build_host

    host_root = Path(tempfile.mkdtemp(prefix="qat-bench-devcheck-", dir="/dev/shm"))
    try:
        vfs = [str(vf) for vf in build_host(host_root)[: args.checks]]
        variants: dict[str, tuple[str, Path | None]] = {"this tree": ("checks", REPO), "syscalls": ("syscalls", None)}
        if args.tree is not None:
            variants[f"tree {args.tree}"] = ("checks", args.tree)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for round_ in range(args.repeat):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                kind, tree = variants[name]
                runs[name].append(run_child(kind, tree, host_root, vfs, args.threads))
    finally:
        shutil.rmtree(host_root, ignore_errors=True)
    return summarise(args, runs)


def summarise(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    result: dict[str, Any] = {"checks": args.checks, "threads": args.threads, "repeat": args.repeat, "cpu_seconds": {}}
    for name, rounds in runs.items():
        first = [run["first"] for run in rounds]
        entry = {"first": statistics.median(first), "first_best": min(first), "first_all": first}
        if rounds[0]["again"] is not None:
            entry["again"] = statistics.median(run["again"] for run in rounds)
        result["cpu_seconds"][name] = entry
    floor = result["cpu_seconds"]["syscalls"]["first"]
    result["ratio_to_syscalls"] = {
        name: entry["first"] / floor for name, entry in result["cpu_seconds"].items() if name != "syscalls"
    }
    if args.tree is not None:  # each round's two runs are neighbours in time: their ratio, then the median
        pairs = zip(runs[f"tree {args.tree}"], runs["this tree"], strict=True)
        result["speedup_over_tree"] = statistics.median(old["first"] / new["first"] for old, new in pairs)
        best = result["cpu_seconds"]
        result["speedup_over_tree_best"] = best[f"tree {args.tree}"]["first_best"] / best["this tree"]["first_best"]
    verdicts = [json.dumps(run["verdicts"]) for rounds in runs.values() for run in rounds if run["verdicts"]]
    result["same_verdicts"] = len(set(verdicts)) == 1
    result["refused"] = sum(line is not None for line in json.loads(verdicts[0])) if verdicts else 0
    result["load_average"] = os.getloadavg()
    return result


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['checks']} fresh checks of distinct VFs in {result['threads']} thread(s),"
        f" median of {result['repeat']} alternating rounds"
    )
    for name, entry in result["cpu_seconds"].items():
        again = f", again {entry['again']:.3f} s" if "again" in entry else ""
        spread = ", ".join(f"{value:.3f}" for value in entry["first_all"])
        per_check = 1e6 * entry["first"] / result["checks"]
        print(
            f"  {name:>24}: {entry['first']:.3f} CPU-s ({per_check:.0f} us a check, best"
            f" {1e6 * entry['first_best'] / result['checks']:.0f} us; runs {spread}){again}"
        )
    for name, ratio in result["ratio_to_syscalls"].items():
        print(f"  {name} / bare syscalls: {ratio:.2f}x")
    if "speedup_over_tree" in result:
        print(
            f"  this tree is {result['speedup_over_tree']:.2f}x cheaper than the other tree"
            f" (median of the rounds' ratios; best against best {result['speedup_over_tree_best']:.2f}x)"
        )
    print(f"  same verdicts in every run: {result['same_verdicts']} ({result['refused']} refused)")
    print("  load average " + ", ".join(f"{value:.2f}" for value in result["load_average"]))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        vfs = json.loads(sys.stdin.read())
        run = child_checks if sys.argv[2] == "checks" else child_syscalls
        print(json.dumps(run(sys.argv[3], vfs, int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000, help="distinct VFs checked per round (at most 1,024)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--tree", type=Path, help="another source tree to time in the same run (PYTHONPATH)")
    parser.add_argument("--threads", type=int, default=1, help="threads sharing the checks, as the agent's workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args)
    emit(result, args.json, report)


if __name__ == "__main__":
    main()
