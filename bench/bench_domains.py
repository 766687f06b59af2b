"""The benchmark's domains on a libvirt connection: what is left of them, and removing them."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import libvirt
from workload import NAMESPACE


def bench_domains(conn: libvirt.virConnect) -> list[libvirt.virDomain]:
    return [dom for dom in conn.listAllDomains(0) if dom.name().startswith(f"{NAMESPACE}_")]


def remove_domains(conn: libvirt.virConnect) -> None:
    """Destroy and undefine our guests, several at a time (each QEMU takes a while to go)."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(_remove, bench_domains(conn)))


def _remove(dom: libvirt.virDomain) -> None:
    try:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError as error:
        print(f"bench: could not remove {dom.name()}: {error}", file=sys.stderr)
