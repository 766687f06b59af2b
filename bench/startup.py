"""How long the CLI takes to start, beside the interpreter's own start in the same run.

Each command is the real ``python -m handler ...`` in a fresh process, run ``--rounds`` times in
turn with the baselines (``python -c pass`` and ``python -c 'import libvirt, lxml.etree'``, the
two libraries every agent needs), and reported as the median wall time and its ratio to a bare
interpreter. ``--tree PATH`` runs the same commands with another checkout's handler package
(e.g. the tree before a change), alternating with this one.

The launcher starts in every launcher pod, the bare-metal agent on each restart under systemd,
and ``--help``, ``render`` and ``status`` are typed by hand; the webhook's ``--help`` is here
because the webhook's module used to import the Kubernetes client for everyone.

    python bench/startup.py [--rounds 15] [--tree PATH] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from output import emit

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "vmis" / "vmi-qat.yaml"
BASELINES = {"python -c pass": ["-c", "pass"], "import libvirt, lxml": ["-c", "import libvirt, lxml.etree"]}


def commands(state_dir: Path) -> dict[str, tuple[list[str], int]]:
    """Each command and the exit status that shows it ran as meant (the launcher refuses at once)."""
    return {
        "qat-handler --help": (["--help"], 0),
        "qat-handler webhook --help": (["webhook", "--help"], 0),
        "qat-handler render vmi-qat.yaml": (["render", str(EXAMPLE)], 0),
        "qat-handler status": (["status", "--state-dir", str(state_dir)], 0),
        "qat-handler launcher (refuses: no VMI)": (["launcher", "--run-dir", str(state_dir / "slot")], 2),
    }


def timed(argv: list[str], tree: Path | None, expected: int = 0) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMI_", "POD_"))}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=tree or REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != expected:
        raise SystemExit(f"startup: {argv} exited {done.returncode}, not {expected}: {done.stderr.strip()[-500:]}")
    return seconds


def measure(rounds: int, tree: Path | None) -> dict[str, Any]:
    trees: dict[str, Path | None] = {"this tree": None} | ({"other tree": tree.resolve()} if tree else {})
    with tempfile.TemporaryDirectory(prefix="qat-startup-") as work:
        runs: dict[str, list[float]] = {}
        for _ in range(rounds):  # everything once per round, so a busy moment hits all alike
            for name, argv in BASELINES.items():
                runs.setdefault(name, []).append(timed(argv, None))
            for label, where in trees.items():
                for name, (argv, expected) in commands(Path(work)).items():
                    runs.setdefault(f"{name} [{label}]", []).append(timed(["-m", "handler", *argv], where, expected))
    floor = statistics.median(runs["python -c pass"])
    medians = {name: statistics.median(times) for name, times in runs.items()}
    return {
        "rounds": rounds,
        "tree": str(tree) if tree else None,
        "seconds": medians,
        "ratio_to_python": {name: value / floor for name, value in medians.items()},
    }


def report(result: dict[str, Any]) -> None:
    print(f"CLI start-up, median of {result['rounds']} alternating rounds (fresh process each):")
    for name, seconds in result["seconds"].items():
        print(f"  {name:58} {seconds * 1000:7.0f} ms   {result['ratio_to_python'][name]:5.1f}x python -c pass")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tree", type=Path, help="another checkout (its handler package) to time beside this one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(measure(args.rounds, args.tree), args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
