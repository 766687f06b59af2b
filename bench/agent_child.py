"""Run the real ``qat-handler agent`` CLI in this (fresh) process, after the imports.

Writes ``time.monotonic()``, ``time.time()`` and ``time.process_time()`` to START_FILE just
before the CLI starts, so the parent can time the agent from its start rather than from
interpreter start-up (CLOCK_MONOTONIC is system-wide), place the agent's log timestamps (wall
clock) on the same axis, and count only the CPU time spent after the imports.
The agent logs to stdout, so the parent sends that to a file.
Usage: python bench/agent_child.py START_FILE AGENT_ARGS...
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# The CLI imports a subcommand's modules only when it runs; imported here, they stay out of the
# timed run, as they did before the CLI deferred them.
import handler.baremetal.node
import handler.cli.agent_cmd
import handler.cli.agent_serve  # noqa: F401
import handler.cli.main as cli


def main() -> int:
    Path(sys.argv[1]).write_text(f"{time.monotonic():.6f} {time.time():.6f} {time.process_time():.6f}\n")
    code: int = cli.main(["agent", *sys.argv[2:]])
    return code


if __name__ == "__main__":
    sys.exit(main())
