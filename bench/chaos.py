"""The long mode of the fault and fuzz tests (tests/reliability): more examples, more kills,
a fresh seed each run.

    python bench/chaos.py                     # 10,000 generated inputs per property, 100 kills
    python bench/chaos.py --only fuzz         # just the generated inputs
    python bench/chaos.py --only chaos --kills 50 --seed 1234

It runs the same tests as the suite, through pytest, with the long settings in the
environment; every failure names the seed (chaos) or the hypothesis blob (fuzz) that
reproduces it. Like the suite, it asserts behaviour, never timing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("fuzz", "chaos"), help="run one kind only")
    parser.add_argument("--kills", type=int, default=100, help="agent kills in the crash-safety test (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="chaos schedule seed (default: a random one)")
    parser.add_argument("--examples", choices=("ci", "long"), default="long", help="hypothesis profile")
    args, pytest_args = parser.parse_known_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    env = dict(os.environ)
    env.update(
        QAT_HANDLER_FUZZ=args.examples,
        QAT_HANDLER_CHAOS_KILLS=str(args.kills),
        QAT_HANDLER_CHAOS_SEED=str(seed),
    )
    marker = args.only or "fuzz or chaos"
    print(f"bench/chaos.py: -m '{marker}', {args.examples} examples, {args.kills} kills, seed {seed}", flush=True)
    command = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "-m", marker, "tests/reliability"]
    return subprocess.call([*command, *pytest_args], cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
