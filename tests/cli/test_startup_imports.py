"""Each subcommand imports what it needs and no more.

The Kubernetes client takes about a quarter of a second to import, and the agent's engine with
libvirt and the metrics library about as much again. The launcher starts in every launcher pod,
the bare-metal agent restarts under systemd, and an operator types ``render`` and ``status`` by
hand: none of them should wait for what they never use. Each case runs the real CLI in a fresh
interpreter and reports, at exit, which of the heavy modules were imported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from handler.cli.main import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vmis" / "vmi-qat.yaml"
REPORT = "imported: "
HEAVY = ("kubernetes", "libvirt", "handler.agent.agent", "prometheus_client")

PROGRAM = f"""
import atexit, json, sys
atexit.register(lambda: print({REPORT!r} + json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr))
from handler.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def imported(*argv: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True, timeout=60, cwd=REPO)
    lines = [line for line in done.stderr.splitlines() if line.startswith(REPORT)]
    assert len(lines) == 1, f"no report from {argv}: rc {done.returncode}, stderr {done.stderr[-2000:]}"
    return set(json.loads(lines[0][len(REPORT) :]))


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (("webhook", "--help"), set()),
        (("agent", "--help"), set()),
        (("render", str(EXAMPLE)), set()),
        (("status", "--state-dir", "/nonexistent/qat-handler-state"), set()),
        (("launcher", "--run-dir", "/nonexistent/slot"), set()),
        (("doctor", "--help"), {"libvirt"}),
    ],
    ids=["webhook-help", "agent-help", "render", "status", "launcher", "doctor-help"],
)
def test_each_command_imports_only_what_it_uses(argv: tuple[str, ...], allowed: set[str]) -> None:
    assert imported(*argv) <= allowed


def test_the_controls_see_the_imports_when_a_command_really_runs() -> None:
    # The same probe, where the import must happen: a webhook that starts, an agent that starts.
    assert "kubernetes" in imported("webhook", "--listen", "not-an-address")
    assert {"libvirt", "handler.agent.agent"} <= imported("agent", "--vmi-dir", "/nonexistent/vmis")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_alone_registers_exactly_itself(name: str) -> None:
    (action,) = [a for a in build_parser(only=name)._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(action.choices) == [name]
