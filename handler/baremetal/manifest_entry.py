"""One manifest file turned into what the agent wants for its VMI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.baremetal.manifest_file import default_uid, env_path_for, load_env, load_manifest
from handler.core.desired import Desired, Intent
from handler.core.device_env import AssignedDevice, resolve_devices
from handler.core.refusal import Refusal, Refused
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi

Allocate = Callable[[VMI], tuple[AssignedDevice, ...]]
"""Pick free VFs for a VMI that has no env file (the bare-metal allocator); raises Refused."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: Path
    key: str
    desired: Desired


def read_entry(path: Path, previous_key: str | None, allocate: Allocate | None = None) -> ManifestEntry:
    """Read ``path``; a broken file keeps the key it had, so a typo never stops a running guest."""
    try:
        document = load_manifest(path)
    except Refused as refused:
        key = previous_key or f"default/{path.stem}"
        return ManifestEntry(path, key, Desired(key, Intent.RUN, None, blocked=refused.refusal))
    namespace, name = _names(document, path)
    key = f"{namespace}/{name}"
    try:
        vmi = parse_vmi(document, default_uid=default_uid(namespace, name))
    except Refused as refused:
        return ManifestEntry(path, key, Desired(key, Intent.RUN, None, blocked=refused.refusal))
    intent = Intent.REMOVE if vmi.deletion_requested else Intent.RUN
    try:
        devices = _devices(path, vmi, allocate)
    except Refused as refused:
        return ManifestEntry(path, key, Desired(key, intent, vmi, blocked=refused.refusal))
    return ManifestEntry(path, key, Desired(key, intent, vmi, devices))


def _devices(path: Path, vmi: VMI, allocate: Allocate | None) -> tuple[AssignedDevice, ...]:
    env = load_env(path)
    if env is not None:
        return resolve_devices(vmi, env)
    if not vmi.devices:
        return ()
    if allocate is not None:
        return allocate(vmi)
    raise Refused(
        Refusal(
            "DevicesUnassigned",
            env_path_for(path).name,
            f"is missing and the VMI asks for {len(vmi.devices)} QAT device(s)",
            "write the VF addresses into it (QAT0=0000:3d:01.1 or PCI_RESOURCE_<NAME>=...)",
        )
    )


def _names(document: Any, path: Path) -> tuple[str, str]:
    meta = document.get("metadata") if isinstance(document, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    return namespace or "default", name or path.stem
