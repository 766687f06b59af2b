"""Quality gates: the package type-checks under ``mypy --strict``, the import layers hold,
and ``ruff`` finds nothing.

Each tool runs as a subprocess of the interpreter running the tests, so the gates check the
environment the tests run in (``.venv`` under ``tests/run.sh``, where the ``test`` extras
install all three). A failure shows the tool's own output.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The interpreter's own bin directory, not resolved: in a virtualenv it holds the venv's scripts."""
HANG_GUARD_SECONDS = 600
"""Only so that a hung tool fails the run instead of stalling it; these gates are not timed."""


def run_tool(*command: str) -> str:
    """Run a tool from the repository root; fail with its output unless it exits 0, else return its stdout."""
    try:
        result = subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        pytest.fail(f"{command[0]} not found ({error}); fix: pip install -e '.[test]'", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def test_mypy_strict_passes_on_the_package() -> None:
    run_tool(sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml", "-p", "handler")


def test_import_layer_contracts_are_kept() -> None:
    output = run_tool(str(BIN / "lint-imports"), "--no-cache", "setup.cfg")
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    for contract in ("pure-core", "layers"):
        name = config[f"importlinter:contract:{contract}"]["name"]
        assert f"{name} KEPT" in output, f"contract {contract} ({name}) was not checked:\n{output}"


def test_ruff_check_passes() -> None:
    run_tool(sys.executable, "-m", "ruff", "check", "--no-cache", "handler", "tests")
