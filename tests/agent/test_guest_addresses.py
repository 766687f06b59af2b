"""Reading a running guest's NIC addresses from libvirt: leases of libvirt networks by MAC, then the
guest agent (only when its channel is connected); loopback and link-local left out; never raising."""

from __future__ import annotations

from typing import Any

import libvirt

from handler.core.interface_status import GuestAddress
from handler.virt.guest_network import interface_addresses

XML = """<domain><devices>
  <interface type='network'><mac address='02:00:00:00:00:01'/><source network='default'/></interface>
  <interface type='bridge'><mac address='02:00:00:00:00:02'/><source bridge='br0'/></interface>
  <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='{state}'/></channel>
</devices></domain>"""
AGENT = {
    "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"type": 0, "addr": "127.0.0.1", "prefix": 8}]},
    "eth1": {
        "hwaddr": "02:00:00:00:00:02",
        "addrs": [
            {"type": 0, "addr": "10.0.0.5", "prefix": 24},
            {"type": 1, "addr": "fe80::1", "prefix": 64},
            {"type": 1, "addr": "fd00::5", "prefix": 64},
        ],
    },
}


class FakeDomain:
    def __init__(self, state: str, agent_fails: bool = False) -> None:
        self.state = state
        self.agent_fails = agent_fails
        self.agent_calls = 0

    def XMLDesc(self, _flags: int) -> str:
        return XML.format(state=self.state)

    def interfaceAddresses(self, source: int) -> dict[str, Any]:
        assert source == libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT
        self.agent_calls += 1
        if self.agent_fails:
            raise libvirt.libvirtError("Guest agent is not responding")
        return AGENT


class FakeNetwork:
    def DHCPLeases(self, mac: str) -> list[dict[str, Any]]:
        return [{"mac": mac, "ipaddr": "192.168.122.9", "type": 0}] if mac == "02:00:00:00:00:01" else []


class FakeConn:
    def __init__(self, dom: FakeDomain) -> None:
        self.dom = dom

    def lookupByName(self, name: str) -> FakeDomain:
        if name != "ns_vm":
            raise libvirt.libvirtError("Domain not found")
        return self.dom

    def networkLookupByName(self, name: str) -> FakeNetwork:
        assert name == "default"
        return FakeNetwork()


def test_leases_then_the_connected_guest_agent() -> None:
    got = interface_addresses(FakeConn(FakeDomain("connected")), "ns_vm")
    assert got == (
        GuestAddress("02:00:00:00:00:01", ("192.168.122.9",)),
        GuestAddress("02:00:00:00:00:02", ("10.0.0.5", "fd00::5")),
    )


def test_a_disconnected_agent_is_not_asked_and_a_failing_one_costs_only_its_part() -> None:
    quiet = FakeDomain("disconnected")
    assert interface_addresses(FakeConn(quiet), "ns_vm") == (GuestAddress("02:00:00:00:00:01", ("192.168.122.9",)),)
    assert quiet.agent_calls == 0
    failing = FakeDomain("connected", agent_fails=True)
    assert interface_addresses(FakeConn(failing), "ns_vm") == (GuestAddress("02:00:00:00:00:01", ("192.168.122.9",)),)
    assert interface_addresses(FakeConn(failing), "gone") == ()
