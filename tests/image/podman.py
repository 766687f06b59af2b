"""Building the image with deploy/image/build.sh and running it with podman, on a host
without systemd or CAP_SYS_RESOURCE (see /work/shared/ENVIRONMENT.md's traps): runc as
the runtime, ulimits no higher than this process's hard limits, and no network."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "image" / "build.sh"
BUILD_TIMEOUT = 1800.0
"""Generous: a first build on a fresh machine fetches a Debian root and wheels (about 2 min idle)."""


def image_name() -> str:
    return subprocess.run([str(BUILD), "--print-name"], capture_output=True, text=True, check=True).stdout.strip()


def build(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the build script (it skips what is up to date); fails the test with its output if it fails."""
    done = subprocess.run([str(BUILD), *args], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, f"build.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _limit(kind: int, ceiling: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)


def run_options() -> list[str]:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nofile = _limit(resource.RLIMIT_NOFILE, 1 << 20)
    nproc = _limit(resource.RLIMIT_NPROC, pid_max)
    return [
        "--runtime", "runc",
        "--network=none",
        "--ulimit", f"nofile={nofile}:{nofile}",
        "--ulimit", f"nproc={nproc}:{nproc}",
    ]  # fmt: skip


def podman_run(image: str, *args: str, options: tuple[str, ...] = (), timeout: float = 120) -> tuple[int, str]:
    """``podman run --rm`` and the (exit status, stdout + stderr)."""
    argv = ["podman", "run", "--rm", *run_options(), *options, image, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr
