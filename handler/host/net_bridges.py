"""Host bridges, read from sysfs under the host root: ``sys/class/net/<name>/bridge`` exists."""

from __future__ import annotations

from pathlib import Path


def host_bridges(host_root: Path) -> frozenset[str]:
    try:
        entries = list((host_root / "sys/class/net").iterdir())
    except OSError:
        return frozenset()
    return frozenset(entry.name for entry in entries if (entry / "bridge").is_dir())


def is_host_bridge(host_root: Path, name: str) -> bool:
    if not name or "/" in name or name in (".", ".."):
        return False
    return (host_root / "sys/class/net" / name / "bridge").is_dir()
