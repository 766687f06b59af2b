"""Building the image with deploy/image/build.sh and running it with deploy/image/run.sh
(podman with the limits, runtime and network this host allows), as the README tells."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "image" / "build.sh"
RUN = REPO / "deploy" / "image" / "run.sh"
BUILD_TIMEOUT = 1800.0
"""Generous: a first build on a fresh machine fetches a Debian root and wheels (about 2 min idle)."""


def image_name() -> str:
    return subprocess.run([str(BUILD), "--print-name"], capture_output=True, text=True, check=True).stdout.strip()


def build(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the build script (it skips what is up to date); fails the test with its output if it fails."""
    done = subprocess.run([str(BUILD), *args], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, f"build.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def podman_run(*args: str, options: tuple[str, ...] = (), timeout: float = 120) -> tuple[int, str]:
    """``deploy/image/run.sh [OPTIONS --] ARGS`` (podman run of the built image) and its (status, output)."""
    done = subprocess.run([str(RUN), *options, "--", *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr
