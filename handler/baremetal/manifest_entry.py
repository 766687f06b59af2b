"""One manifest file turned into what the agent wants for its VMI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.baremetal.manifest_file import (
    default_uid,
    is_gone,
    load_env,
    parse_manifest,
    read_text,
    unreadable,
)
from handler.core.desired import Desired, Intent
from handler.core.device_env import resolve_devices
from handler.core.refusal import Refused
from handler.core.vmi_parse import parse_vmi


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: Path
    key: str
    desired: Desired


def read_entry(path: Path, previous_key: str | None) -> ManifestEntry | None:
    """Read ``path``; a broken file keeps the key it had, so a typo never stops a running guest.
    None when there is no such file (any more): one ``open`` instead of a ``stat`` first."""
    try:
        document = parse_manifest(path, read_text(path))
    except OSError as error:
        if is_gone(error):
            return None
        return _broken(path, previous_key, unreadable(path, error))
    except UnicodeDecodeError as error:
        return _broken(path, previous_key, unreadable(path, error))
    except Refused as refused:
        return _broken(path, previous_key, refused)
    namespace, name = _names(document, path)
    key = f"{namespace}/{name}"
    try:
        vmi = parse_vmi(document, default_uid=default_uid(namespace, name))
    except Refused as refused:
        return ManifestEntry(path, key, Desired(key, Intent.RUN, None, blocked=refused.refusal))
    intent = Intent.REMOVE if vmi.deletion_requested else Intent.RUN
    try:
        env = load_env(path)
        if env is None:
            # No env file: the agent's allocator picks free VFs when the guest is started.
            return ManifestEntry(path, key, Desired(key, intent, vmi, allocate=bool(vmi.devices)))
        devices = resolve_devices(vmi, env)
    except Refused as refused:
        return ManifestEntry(path, key, Desired(key, intent, vmi, blocked=refused.refusal))
    return ManifestEntry(path, key, Desired(key, intent, vmi, devices))


def _broken(path: Path, previous_key: str | None, refused: Refused) -> ManifestEntry:
    key = previous_key or f"default/{path.stem}"
    return ManifestEntry(path, key, Desired(key, Intent.RUN, None, blocked=refused.refusal))


def _names(document: Any, path: Path) -> tuple[str, str]:
    meta = document.get("metadata") if isinstance(document, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    return namespace or "default", name or path.stem
