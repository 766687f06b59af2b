"""What the bare-metal agent spends before its first reconcile, and on each status flush.

    python bench/reading.py [--tree PATH] [--rounds 7] [--vmis 1000] [--changed 10] [--json]

Writes the throughput workload (1,000 manifests, each with its env file) and times, as CPU
(``time.process_time``) in a fresh process per run, the median of alternating runs (and the
fastest, which the machine's other load disturbs least):

* reading: ``DirectorySource.scan()`` of the directory (manifest, YAML, ``parse_vmi``, env
  file, devices); beside it the floor, a bare ``open().read()`` of every file and
  ``yaml.load(..., CSafeLoader)`` of every manifest;
* flushing: 100 ``StatusStore.flush()`` calls on a store of 1,000 VMIs, ``--changed`` of them
  written before each; beside it the floor, ``write_atomically`` of the same bytes as each
  flush wrote (the file write and its two fsyncs, nothing else);
* flush work: the same flushes with the file write left out (the pieces are handed to a sink
  that only counts their bytes), i.e. the store's own CPU, which the fsyncs' noise hides above.

``--tree PATH`` adds the same runs with the handler package of another checkout (the code
before a change), so before and after come from the same rounds. A benchmark: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FLUSHES = 100


def main() -> int:
    args = _parser().parse_args()
    if args.child:
        print(json.dumps(_child(args.child, Path(args.tree), Path(args.dir), args.changed)))
        return 0
    sys.path.insert(0, str(REPO))
    from workload import write_throughput_workload

    work = Path(tempfile.mkdtemp(prefix="qat-reading-"))
    host_root = Path(
        tempfile.mkdtemp(prefix="qat-reading-host-", dir="/dev/shm" if Path("/dev/shm").is_dir() else work)
    )
    try:
        write_throughput_workload(work, host_root, args.vmis)
        trees = {"after": REPO} | ({"before": Path(args.tree).resolve()} if args.tree else {})
        results = _rounds(args, work, trees)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(host_root, ignore_errors=True)
    print(json.dumps(results, indent=2) if args.json else _summary(results, args))
    return 0


def _rounds(args: argparse.Namespace, work: Path, trees: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
    runs = [("read", "floor", REPO), ("flush", "floor", REPO)]
    runs += [(part, name, tree) for part in ("read", "flush", "flush-work") for name, tree in trees.items()]
    results: dict[str, dict[str, list[float]]] = {"read": {}, "flush": {}, "flush-work": {}}
    for round_ in range(args.rounds):
        order = runs if round_ % 2 == 0 else runs[::-1]  # alternate, so drift in the load hits all alike
        for part, name, tree in order:
            mode = part if name != "floor" else f"{part}-floor"
            command = [sys.executable, __file__, "--child", mode, "--tree", str(tree), "--dir", str(work)]
            command += ["--changed", str(args.changed)]
            out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            if out.get("entries", args.vmis) != args.vmis or not out.get("code", str(tree)).startswith(str(tree)):
                raise SystemExit(f"{name}: read {out.get('entries')} of {args.vmis} VMIs with {out.get('code')}")
            results[part].setdefault(name, []).append(out["cpu"])
    return results


def _child(mode: str, tree: Path, work: Path, changed: int) -> dict[str, Any]:
    sys.path.insert(0, str(tree))  # before any import of handler: this tree's code is measured
    if mode == "read":
        return _read(work / "vmis")
    if mode == "read-floor":
        return _read_floor(work / "vmis")
    if mode in ("flush", "flush-work"):
        return _flush(work / f"state-{time.monotonic_ns()}", changed, write=mode == "flush")
    return _flush_floor(work / f"state-{time.monotonic_ns()}", changed)


def _read(vmi_dir: Path) -> dict[str, Any]:
    import handler
    from handler.baremetal.directory_source import DirectorySource

    source = DirectorySource(vmi_dir)
    start = time.process_time()
    source.scan()
    cpu = time.process_time() - start
    ready = sum(1 for key in source.keys() if (d := source.desired(key)) is not None and d.blocked is None)
    return {"cpu": cpu, "entries": ready, "code": handler.__file__}


def _read_floor(vmi_dir: Path) -> dict[str, Any]:
    import yaml

    paths = sorted(vmi_dir.iterdir())
    start = time.process_time()
    for path in paths:
        with open(path) as handle:
            text = handle.read()
        if path.suffix == ".yaml":
            yaml.load(text, Loader=yaml.CSafeLoader)
    return {"cpu": time.process_time() - start}


def _flush(state_dir: Path, changed: int, write: bool) -> dict[str, Any]:
    from handler.baremetal import status_store

    store = status_store.StatusStore(state_dir)
    keys = _fill(store)
    if not write:
        status_store.write_atomically = lambda _path, pieces, _mode=0o644: sum(map(len, pieces))  # type: ignore[assignment]
    cpu = 0.0
    for round_ in range(FLUSHES):
        for index in range(changed):
            _change(store, keys[(round_ * changed + index) % len(keys)], round_)
        start = time.process_time()
        store.flush()
        cpu += time.process_time() - start
    shutil.rmtree(state_dir)
    return {"cpu": cpu}


def _flush_floor(state_dir: Path, changed: int) -> dict[str, Any]:
    """The same files as ``_flush`` writes (the same changes, flushed untimed), each written again, timed."""
    from handler.baremetal.status_store import StatusStore
    from handler.ops.atomic_file import write_atomically

    store = StatusStore(state_dir)
    keys = _fill(store)
    cpu = 0.0
    for round_ in range(FLUSHES):
        for index in range(changed):
            _change(store, keys[(round_ * changed + index) % len(keys)], round_)
        store.flush()
        body = store.path.read_bytes()
        start = time.process_time()
        write_atomically(store.path, (body,))
        cpu += time.process_time() - start
    shutil.rmtree(state_dir)
    return {"cpu": cpu}


def _fill(store: Any) -> list[str]:
    keys = [f"qat-bench/vmi-{index:04d}" for index in range(1000)]
    for key in keys:
        _change(store, key, -1)
    store.flush()
    return keys


def _change(store: Any, key: str, round_: int) -> None:
    from handler.core.actions import RecordEvent
    from handler.core.status import Phase, VMIStatus, ready, synchronized

    name = key.replace("/", "_")
    store.write(key, VMIStatus(Phase.RUNNING, name, (ready(round_ % 2 == 0), synchronized(True)), ()))
    store.record_event(key, RecordEvent("Started", f"started domain {name} ({round_})"))


def _summary(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    titles = {
        "read": f"reading {args.vmis} manifests + env files (DirectorySource.scan), CPU",
        "flush": f"{FLUSHES} status flushes of 1,000 VMIs, {args.changed} changed before each, CPU",
        "flush-work": f"the same {FLUSHES} flushes without the file write (the store's own work), CPU",
    }
    lines = []
    for part, runs in results.items():
        floor = statistics.median(runs.get("floor") or results["flush"]["floor"])
        lines.append(f"{titles[part]}, median of {args.rounds}:")
        for name, cpus in runs.items():
            median = statistics.median(cpus)
            spread = f"{min(cpus) * 1000:.1f}..{max(cpus) * 1000:.1f} ms"
            ratio = f"{median / floor:5.2f}x the floor" if "floor" in runs else ""
            lines.append(f"  {name:7s} {median * 1000:8.1f} ms  ({spread})  {ratio}")
        if "before" in runs:
            by_median = statistics.median(runs["before"]) / statistics.median(runs["after"])
            by_min = min(runs["before"]) / min(runs["after"])
            lines.append(f"  before/after {by_median:.2f}x by median, {by_min:.2f}x by the fastest runs")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", help="another checkout (its handler package) to time beside this one")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--vmis", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=10, help="VMIs written before each flush")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
