"""libvirtd stopped and started again under a running agent, on a libvirtd of the test's own.

The agent must notice the outage (``/readyz`` 503, ``qat_handler_libvirt_connected`` 0),
reconnect by itself once libvirtd is back (no VMI change or resync needed to prompt it),
leave the running guest alone, and carry on with new VMIs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import libvirt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.agent_harness import AgentProcess, Workspace, domain_name, key_of, wait_until
from tests.support.guest_image import ensure_guest_image
from tests.support.http_probe import free_port, get
from tests.support.private_libvirtd import PrivateLibvirtd, private_libvirtd

pytestmark = [pytest.mark.libvirtd, pytest.mark.guest]

OUTAGE_NOTICED = 15.0  # libvirt's close callback, then the next main-loop tick
BACK_WITHIN = 20.0  # the reconnect backoff is capped at 4 s; generous for a loaded machine


class Probe:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def ready(self) -> int:
        return get(self.base + "/readyz")[0]

    def connected(self) -> float | None:
        status, body = get(self.base + "/metrics")
        if status != 200:
            return None
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == "qat_handler_libvirt_connected":
                    return sample.value
        return None


@pytest.fixture
def daemon() -> Iterator[PrivateLibvirtd]:
    with private_libvirtd() as started:
        yield started


def domain_id(uri: str, vmi_name: str) -> int:
    conn = libvirt.open(uri)
    try:
        return int(conn.lookupByName(domain_name(vmi_name)).ID())
    finally:
        conn.close()


def test_agent_follows_a_libvirtd_restart_and_reconnects_by_itself(daemon: PrivateLibvirtd) -> None:
    ws = Workspace.create()
    port = free_port()
    probe = Probe(port)
    agent = AgentProcess(ws, "--connect", daemon.uri, "--metrics-address", f"127.0.0.1:{port}", on_stop="keep")
    try:
        ws.add_vmi("steady", ensure_guest_image("noacpi"), grace=5)
        phase = lambda name: ws.status_file().get(key_of(name), {}).get("phase")  # noqa: E731
        wait_until("steady Running", lambda: phase("steady") == "Running", 60)
        wait_until("ready before the outage", lambda: probe.ready() == 200 and probe.connected() == 1, 20)
        guest = domain_id(daemon.uri, "steady")

        daemon.stop()
        print("\nlibvirtd stopped")
        wait_until("/readyz 503 and connected 0", lambda: probe.ready() == 503 and probe.connected() == 0,
                   OUTAGE_NOTICED)  # fmt: skip
        agent.wait_log("libvirt connection lost; reconnecting", 5)

        daemon.start()
        back_at = time.monotonic()
        wait_until("/readyz 200 and connected 1 after the restart",
                   lambda: probe.ready() == 200 and probe.connected() == 1, BACK_WITHIN)  # fmt: skip
        print(f"agent ready again {time.monotonic() - back_at:.1f}s after libvirtd answered")
        agent.wait_log("libvirt connection re-established; resyncing", 5)

        assert domain_id(daemon.uri, "steady") == guest, "the guest was restarted"
        ws.add_vmi("after", ensure_guest_image("noacpi"), grace=5)
        wait_until("after Running", lambda: phase("after") == "Running", 60)
        assert phase("steady") == "Running"
        assert not agent.find("reconcile crashed"), agent.tail()
        failed = [line for line in agent.lines() if line.get("reason") in ("Failed", "Crashed", "Destroyed")]
        assert failed == [], failed
    finally:
        agent.kill()
        shutil.rmtree(ws.root, ignore_errors=True)
