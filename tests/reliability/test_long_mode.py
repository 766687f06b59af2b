"""The long mode's command line, as the README and bench/README.md show it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def chaos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bench/chaos.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_help_names_the_options() -> None:
    result = chaos("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--only", "--kills", "--seed", "--examples"):
        assert option in result.stdout


def test_the_markers_select_the_reliability_tests() -> None:
    result = chaos("--only", "fuzz", "--examples", "ci", "--collect-only", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_fuzz_inputs.py::" in result.stdout and "test_chaos_baremetal" not in result.stdout
    result = chaos("--only", "chaos", "--seed", "5", "--collect-only", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seed 5" in result.stdout and "test_chaos_baremetal.py::" in result.stdout
    assert "test_fuzz_inputs" not in result.stdout
