"""The floor for throughput: a bare libvirt-python loop, in a fresh process, that defines and
starts the given domain XMLs on libvirt's in-process test driver. Prints JSON.

Usage: python bench/baseline_loop.py URI XML_DIR
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import libvirt


def main() -> int:
    uri, xml_dir = sys.argv[1], Path(sys.argv[2])
    xmls = [path.read_text() for path in sorted(xml_dir.glob("*.xml"))]
    conn = libvirt.open(uri)
    started, cpu_started = time.monotonic(), time.process_time()
    for xml in xmls:
        conn.defineXML(xml).create()
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec (it would include the parent's RSS).
    hwm = re.search(r"VmHWM:\s*(\d+)", Path("/proc/self/status").read_text())
    peak_kib = int(hwm[1]) if hwm else 0
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "domains": len(xmls), "peak_rss_kib": peak_kib}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
