"""The floor for throughput: a bare libvirt-python loop, in a fresh process, that defines and
starts the given domain XMLs on libvirt's in-process test driver. Prints JSON.

With ``--events`` the loop first does what any event-driven agent must: it runs libvirt's
default event loop on a thread and listens for lifecycle events (the callback does
nothing), so libvirt queues and delivers a DEFINED and a STARTED event per domain. That is a
second, higher floor: the part of the agent's libvirt cost that no agent code can remove.

Usage: python bench/baseline_loop.py URI XML_DIR [--events]
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

import libvirt


def main() -> int:
    uri, xml_dir, events = sys.argv[1], Path(sys.argv[2]), "--events" in sys.argv[3:]
    xmls = [path.read_text() for path in sorted(xml_dir.glob("*.xml"))]
    if events:
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_events, daemon=True).start()
    conn = libvirt.open(uri)
    if events:
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, _ignore, None)
    started, cpu_started = time.monotonic(), time.process_time()
    for xml in xmls:
        conn.defineXML(xml).create()
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec (it would include the parent's RSS).
    hwm = re.search(r"VmHWM:\s*(\d+)", Path("/proc/self/status").read_text())
    peak_kib = int(hwm[1]) if hwm else 0
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "domains": len(xmls), "peak_rss_kib": peak_kib}))
    return 0


def _run_events() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def _ignore(*_args: object) -> None:
    """The lifecycle callback: libvirt queues and delivers every event to it; it does nothing."""


if __name__ == "__main__":
    sys.exit(main())
