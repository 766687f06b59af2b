"""libvirt's ``default`` NAT network for the guest-network tests: defined and active.

libvirt-daemon-system ships it, but nothing starts it here (no systemd), and it needs
dnsmasq-base (in deploy/bootstrap.sh). Idempotent; an active network is left alone.
"""

from __future__ import annotations

from typing import Any

import libvirt

DEFAULT_NETWORK = "default"
# libvirt's own default.xml, so a host that lost it gets the usual one back.
DEFAULT_XML = """<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
"""


def ensure_default_network(conn: Any) -> str:
    """Define and start ``default`` if needed; returns its bridge name."""
    try:
        network = conn.networkLookupByName(DEFAULT_NETWORK)
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
            raise
        network = conn.networkDefineXML(DEFAULT_XML)
    if not network.isActive():
        try:
            network.create()
        except libvirt.libvirtError:
            if not network.isActive():  # another test process started it meanwhile: fine
                raise
    return str(network.bridgeName())
