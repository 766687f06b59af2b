"""Only the subcommands that talk to Kubernetes load its client library.

The client takes about a quarter of a second to import. The launcher starts in every launcher
pod, the bare-metal agent restarts under systemd, and an operator types ``--help``, ``render``
and ``status`` by hand: none of them should wait for it. Each case runs the real CLI in a
fresh interpreter and reports, at exit, whether ``kubernetes`` was imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vmis" / "vmi-qat.yaml"
REPORT = "kubernetes imported: "

PROGRAM = f"""
import atexit, sys
atexit.register(lambda: print({REPORT!r} + str("kubernetes" in sys.modules), file=sys.stderr))
from handler.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def kubernetes_imported(*argv: str) -> bool:
    done = subprocess.run([sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True, timeout=60, cwd=REPO)
    lines = [line for line in done.stderr.splitlines() if line.startswith(REPORT)]
    assert len(lines) == 1, f"no report from {argv}: rc {done.returncode}, stderr {done.stderr[-2000:]}"
    return lines[0] == REPORT + "True"


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("webhook", "--help"),
        ("render", str(EXAMPLE)),
        ("status", "--state-dir", "/nonexistent/qat-handler-state"),
        ("launcher", "--run-dir", "/nonexistent/slot"),
    ],
    ids=["help", "webhook-help", "render", "status", "launcher"],
)
def test_commands_without_kubernetes_never_import_its_client(argv: tuple[str, ...]) -> None:
    assert not kubernetes_imported(*argv)


def test_the_webhook_imports_the_client_when_it_runs() -> None:
    # The control: the same probe sees the import once a command really serves.
    assert kubernetes_imported("webhook", "--listen", "not-an-address")
