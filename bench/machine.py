"""What the benchmark ran on: printed beside every result, since the numbers mean little without it."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import libvirt
import lxml
import yaml


def describe(restart_uri: str | None) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpuinfo("model name"),
        "memory_gib": round(_meminfo_kib("MemTotal") / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libvirt_python": _version(libvirt.getVersion()),
        "libvirtd": _daemon_version(restart_uri) if restart_uri else None,
        "lxml": lxml.__version__,
        "pyyaml": f"{yaml.__version__} ({'libyaml' if yaml.__with_libyaml__ else 'pure Python'})",
        "load_average": os.getloadavg(),
    }


def summary_line(machine: dict[str, Any]) -> str:
    load = ", ".join(f"{value:.2f}" for value in machine["load_average"])
    daemon = f", libvirtd {machine['libvirtd']}" if machine["libvirtd"] else ""
    return (
        f"{machine['cpus_usable']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}, libvirt {machine['libvirt_python']}{daemon}, "
        f"lxml {machine['lxml']}, PyYAML {machine['pyyaml']}; load average {load} at start"
    )


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _daemon_version(uri: str) -> str | None:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return None
    try:
        return f"{_version(conn.getLibVersion())} (QEMU {_version(conn.getVersion())})"
    finally:
        conn.close()


def _cpuinfo(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return platform.processor() or "unknown"


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    print(summary_line(describe(sys.argv[1] if len(sys.argv) > 1 else None)))
