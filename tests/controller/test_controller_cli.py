"""`qat-handler controller` as a user types it: the --help examples, and its one-line errors."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from handler.cli.controller_cmd import EXAMPLES
from handler.cli.main import build_parser
from tests.support.fakekube import FakeApiServer

REPO = Path(__file__).resolve().parents[2]


def example_lines() -> list[list[str]]:
    return [shlex.split(line.strip()) for line in EXAMPLES.splitlines() if line.strip().startswith("qat-handler ")]


def environ(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG", "POD_"))}
    return {**base, **extra}


def test_every_help_example_parses() -> None:
    examples = example_lines()
    assert len(examples) == 3
    for argv in examples:
        args = build_parser().parse_args(argv[1:])
        assert args.command == "controller" and args.launcher_image == "qat-handler:0.1.0"


def test_the_workstation_example_runs_against_a_cluster(tmp_path: Path) -> None:
    (_, workstation, _) = example_lines()
    with FakeApiServer() as server:
        process = start_against(server, tmp_path, workstation[1:])
        try:
            wait_for_lease(server, process)
            (lease,) = server.objects("leases", "qat-handler")
            assert lease["spec"]["holderIdentity"], "the identity is the hostname plus a random suffix"
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "leading" in output and "Traceback" not in output


def test_no_credentials_is_one_line(tmp_path: Path) -> None:
    done = run_without_cluster(tmp_path, "--launcher-image", "qat-handler:0.1.0")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("qat-handler: no Kubernetes credentials") and "fix:" in line


def test_an_empty_launcher_image_is_refused(tmp_path: Path) -> None:
    done = run_without_cluster(tmp_path, "--launcher-image", " ")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "qat-handler: --launcher-image is empty; fix: pass the qat-handler image, e.g. qat-handler:0.1.0"
    ]


def test_a_leader_that_cannot_renew_exits_so_that_only_the_new_leader_acts(tmp_path: Path) -> None:
    with FakeApiServer() as server:
        process = start_against(
            server, tmp_path, ["controller", "--launcher-image", "qat-handler:0.1.0"], POD_NAME="controller-0"
        )
        try:
            wait_for_lease(server, process)
            server.fail_next("*", "/leases/", 503, times=10_000)
            output, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 1
    assert "lost leadership; exiting so that only the new leader acts" in output


def run_without_cluster(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``qat-handler controller ARGS`` with no cluster to reach: for the errors it stops on first."""
    return subprocess.run(
        [sys.executable, "-m", "handler", "controller", *args],
        cwd=REPO,
        env=environ(KUBECONFIG=str(tmp_path / "absent")),
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_against(server: FakeApiServer, tmp_path: Path, args: list[str], **env: str) -> subprocess.Popen[str]:
    """``qat-handler ARGS`` against the fake API server, its output collected on stdout."""
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    return subprocess.Popen(
        [sys.executable, "-m", "handler", *args],
        cwd=REPO,
        env=environ(KUBECONFIG=str(kubeconfig), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_lease(server: FakeApiServer, process: subprocess.Popen[str]) -> None:
    """Until the controller has written its Lease (it must not exit meanwhile), for up to 60 s."""
    deadline = time.monotonic() + 60
    while not server.objects("leases", "qat-handler") and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.1)
