"""`qat-handler controller --metrics-address` as a user runs it: /healthz, /readyz and /metrics
of a leader and a standby against the fake API server, read with plain HTTP GETs; and the
liveness rules on an injected clock."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler import __version__
from handler.controller.controller import Controller
from handler.controller.health import ControllerHealth
from handler.controller.lease import LeaderElector
from handler.core.leader_lease import LeaseTiming
from tests.controller.harness import SETTINGS, WATCH, create_vmi, phase, pods_of, vmi, wait_for
from tests.controller.test_controller_cli import REPO, environ, example_lines, run_without_cluster
from tests.support.fakekube import FakeApiServer
from tests.support.http_probe import free_port, get

VMIS_PATH = r"/virtualmachineinstances"


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from a Prometheus text exposition (labels in any order), None if absent."""
    for found in re.finditer(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", text, re.MULTILINE):
        if dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or "")) == labels:
            return float(found.group(2))
    return None


class Replica:
    def __init__(self, kubeconfig: Path, name: str, work: Path) -> None:
        (_, _, example) = example_lines()
        self.port = free_port()
        argv = [a if a != "127.0.0.1:9472" else f"127.0.0.1:{self.port}" for a in example[1:]]
        assert f"127.0.0.1:{self.port}" in argv, "the example's address is swapped for a free port"
        self.log = work / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "handler", *argv, "--lease-namespace", "qat-handler"],
            cwd=REPO,
            env=environ(KUBECONFIG=str(kubeconfig), POD_NAME=name),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )

    def get(self, path: str) -> tuple[int, str]:
        assert self.process.poll() is None, self.log.read_text()
        return get(f"http://127.0.0.1:{self.port}{path}")

    def metric(self, name: str, **labels: str) -> float | None:
        return metric(self.get("/metrics")[1], name, **labels)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text()


@pytest.fixture
def replicas(tmp_path: Path, server: FakeApiServer) -> Iterator[Callable[[str], Replica]]:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    started: list[Replica] = []

    def start(name: str) -> Replica:
        started.append(Replica(kubeconfig, name, tmp_path))
        return started[-1]

    yield start
    for replica in started:
        output = replica.stop()
        assert replica.process.returncode == 0, output
        assert "Traceback" not in output, output


def lease_holder(server: FakeApiServer) -> str:
    lease = server.get_object("leases", "qat-handler", "qat-handler-controller") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def test_leader_and_standby_are_alive_ready_and_say_which_leads(
    server: FakeApiServer, replicas: Callable[[str], Replica]
) -> None:
    leader = replicas("controller-a")
    wait_for("controller-a leading", lambda: lease_holder(server) == "controller-a")
    standby = replicas("controller-b")
    for replica, role in ((leader, "leading"), (standby, "standby, ready to take over")):
        assert wait_for("/readyz 200", lambda r=replica: r.get("/readyz")[0] == 200)  # type: ignore[misc]
        assert replica.get("/readyz") == (200, f"{role}\n")
        assert replica.get("/healthz") == (200, "ok\n")
        assert replica.get("/nothing-here")[0] == 404
    assert leader.metric("qat_handler_controller_leading") == 1.0
    assert wait_for(
        "standby rounds", lambda: standby.metric("qat_handler_controller_lease_rounds_total", outcome="standby")
    )
    assert standby.metric("qat_handler_controller_leading") == 0.0
    assert leader.metric("qat_handler_build_info", version=__version__, python=sys.version.split()[0]) == 1.0


def test_metrics_count_pods_phases_and_api_errors(server: FakeApiServer, replicas: Callable[[str], Replica]) -> None:
    leader = replicas("controller-a")
    wait_for("leading", lambda: lease_holder(server) == "controller-a")
    assert leader.metric("qat_handler_controller_launcher_pods_total", action="created") == 0.0
    uid = create_vmi(server, vmi("counted"))["metadata"]["uid"]
    (pod,) = wait_for("the launcher pod", lambda: pods_of(server, uid))
    wait_for("Scheduling", lambda: phase(server, "counted") == "Scheduling")
    created = lambda: leader.metric("qat_handler_controller_launcher_pods_total", action="created")  # noqa: E731
    assert wait_for("pods created = 1", lambda: created() == 1.0)
    scheduling = lambda: leader.metric("qat_handler_controller_vmi_phases_written_total", phase="Scheduling")  # noqa: E731
    assert wait_for("Scheduling written once", lambda: scheduling() == 1.0)

    # The pod disappears: the VMI is Failed, with a Warning Event from the controller.
    server.remove_object("pods", "default", pod["metadata"]["name"])
    wait_for("Failed", lambda: phase(server, "counted") == "Failed")
    failed = lambda: leader.metric("qat_handler_controller_vmi_phases_written_total", phase="Failed")  # noqa: E731
    assert wait_for("Failed written once", lambda: failed() == 1.0)
    events = [e for e in server.objects("events", "default", group="") if e["involvedObject"]["name"] == "counted"]
    assert [(e["reason"], e["type"], e["source"]["component"]) for e in events] == [
        ("PodDisappeared", "Warning", "qat-handler-controller")
    ]

    # A refused pod creation is an API error, counted by call.
    server.fail_next("POST", r"/pods$", 500, times=3)
    create_vmi(server, vmi("refused"))
    errors = lambda: leader.metric("qat_handler_controller_api_errors_total", call="create_pod") or 0  # noqa: E731
    assert wait_for("create_pod errors counted", lambda: errors() >= 1)
    assert wait_for("depth gauge served", lambda: leader.metric("qat_handler_controller_queue_depth") is not None)


def test_not_ready_until_the_caches_have_their_first_list_and_alive_through_api_faults(
    server: FakeApiServer, replicas: Callable[[str], Replica]
) -> None:
    """An API server that fails every call is not the replica's fault: it stays alive (no
    restart would help), is not ready, and counts its failed lease rounds."""
    server.fail_next("GET", VMIS_PATH, 503, times=1_000_000)
    server.fail_next("*", "/leases/", 503, times=1_000_000)
    replica = replicas("controller-a")
    failed = lambda: replica.metric("qat_handler_controller_lease_rounds_total", outcome="failed") or 0  # noqa: E731
    assert wait_for("failed lease rounds counted", lambda: failed() >= 2)
    assert replica.get("/healthz") == (200, "ok\n")
    status, body = replica.get("/readyz")
    assert (status, body) == (503, "the VMI and launcher pod caches have not had their first list yet\n")
    assert replica.metric("qat_handler_controller_leading") == 0.0
    server.clear_faults()
    assert wait_for("/readyz 200 once listed", lambda: replica.get("/readyz") == (200, "leading\n"))


def test_a_bad_metrics_address_is_one_line(tmp_path: Path) -> None:
    done = run_without_cluster(tmp_path, "--launcher-image", "x:1", "--metrics-address", "9472")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("qat-handler: --metrics-address 9472: ") and "fix: use HOST:PORT" in line


# -- liveness rules on an injected clock ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unstarted(server: FakeApiServer, clock: Clock) -> tuple[Controller, LeaderElector]:
    controller = Controller(server.api_client(), SETTINGS, WATCH, clock=clock)
    elector = LeaderElector(server.api_client(), "qat-handler", "qat-handler-controller", "me", LeaseTiming(), clock)
    return controller, elector


def test_healthz_fails_on_a_stuck_worker_a_still_loop_or_overdue_renewals(server: FakeApiServer) -> None:
    clock = Clock()
    controller, elector = unstarted(server, clock)
    health = ControllerHealth(controller, elector, stall_seconds=30, clock=clock)
    assert health.alive() == (True, "ok")

    controller.pulse.working("controller-0")
    clock.now += 31
    health.turned()
    assert health.alive() == (False, "workers stuck on one VMI for over 30s: controller-0")
    controller.pulse.waiting("controller-0")
    assert health.alive() == (True, "ok")

    clock.now += 31
    assert health.alive() == (False, "the leader-election loop last turned 31s ago (limit 30s)")
    health.turned()

    assert elector.try_once(), "creates the Lease"
    clock.now += 8
    health.turned()
    assert health.alive() == (False, "lease renewals stalled: last renewed 8s ago (deadline 7s)")
    assert elector.try_once()
    assert health.alive() == (True, "ok")


def test_healthz_fails_when_a_thread_has_ended(server: FakeApiServer) -> None:
    clock = Clock()
    controller, elector = unstarted(server, clock)
    health = ControllerHealth(controller, elector, clock=clock)
    controller.start()
    try:
        assert wait_for("synced", lambda: controller.wait_synced(0.1))
        assert health.alive() == (True, "ok")
        controller.vmis.stop()
        wait_for("the VMI informer to end", lambda: not controller.vmis.running)
        assert health.alive() == (False, "threads ended: informer-vmis")
    finally:
        controller.stop()
