"""A real guest on libvirt's default NAT network: it gets a DHCP lease, the agent reports the
address (status -o json and -o wide), and the host reaches the guest there."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from lxml import etree

from handler.core.vmi_networks import stable_mac
from tests.integration.agent_harness import Workspace, domain_name, key_of, status_rows, wait_until
from tests.integration.guest_fixtures import StartAgent, agents, manifest_uid, ws  # noqa: F401
from tests.support.guest_image import IP_MARKER, RNG_MARKER, ensure_guest_image, read_serial
from tests.support.libvirt_network import ensure_default_network

pytestmark = [pytest.mark.libvirtd, pytest.mark.guest]

LEASE_TIMEOUT = 240.0  # boot (~3 s) plus DHCP under TCG; generous for a loaded machine


def test_guest_gets_a_lease_the_agent_reports_it_and_the_host_pings_it(
    ws: Workspace,  # noqa: F811
    agents: StartAgent,  # noqa: F811
    libvirt_conn: Any,
) -> None:
    ensure_default_network(libvirt_conn)
    image = ensure_guest_image("interactive")
    ws.add_vmi(
        "netguest",
        image,
        grace=5,
        devices_extra={"interfaces": [{"name": "default", "masquerade": {}}], "rng": {}},
        spec_extra={"networks": [{"name": "default", "pod": {}}]},
    )
    agents()
    mac = stable_mac(manifest_uid(ws, "netguest"), "default")

    def guest_ip() -> str | None:
        found = re.search(re.escape(IP_MARKER) + r"(\d+\.\d+\.\d+\.\d+)", ws.serial("netguest"))
        return found.group(1) if found else None

    ip = wait_until(lambda: f"a DHCP lease in the guest:\n{ws.serial('netguest')[-2000:]}", guest_ip, LEASE_TIMEOUT)

    def reported() -> dict[str, Any] | None:
        row = status_rows(ws.state_dir).get(key_of("netguest")) or {}
        interfaces = row.get("interfaces") or []
        return interfaces[0] if interfaces and interfaces[0].get("ipAddress") else None

    interface = wait_until("the agent to report the guest's address", reported, LEASE_TIMEOUT, poll=1.0)
    assert interface == {"name": "default", "mac": mac, "ipAddress": ip, "ipAddresses": [ip]}

    wide = subprocess.run(
        [sys.executable, "-m", "handler", "status", "--state-dir", str(ws.state_dir), "-o", "wide"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    (line,) = [row for row in wide.splitlines() if "netguest" in row]
    assert ip in line.split()

    ping = subprocess.run(["ping", "-c", "3", "-W", "5", ip], capture_output=True, text=True, timeout=60)
    assert ping.returncode == 0, ping.stdout + ping.stderr + read_serial(ws.serial_log("netguest"))[-1000:]

    live = etree.fromstring(libvirt_conn.lookupByName(domain_name("netguest")).XMLDesc(0).encode())
    (nic,) = live.findall("devices/interface")
    assert (nic.get("type"), nic.find("source").get("network"), nic.find("mac").get("address")) == (
        "network",
        "default",
        mac,
    )
    assert live.findtext("devices/rng/backend") == "/dev/urandom"
    assert re.search(re.escape(RNG_MARKER) + r".*virtio_rng", ws.serial("netguest")), "rng: {} reached the guest"
