"""Volume sources whose file the agent makes for the guest, and where those files live.

A hostDisk names a file the operator owns. Every other source is a file the agent prepares
before the domain is defined (handler/host/guest_files.py) and removes after it is undefined.
Their names come from the VMI uid and the disk's position, never from the VMI's strings.
"""

from __future__ import annotations

from dataclasses import dataclass

INLINE_LIMIT_BYTES = 2048
"""Inline ``userData`` / ``networkData`` (as written, base64 or not), as KubeVirt caps them."""
SECRET_LIMIT_BYTES = 1 << 20
"""User or network data read from a Secret: the API server's own cap on a Secret."""


@dataclass(frozen=True, slots=True)
class EmptyDisk:
    """``emptyDisk``: a sparse raw file, made at define, gone with the VMI."""

    capacity_bytes: int


@dataclass(frozen=True, slots=True)
class CreateIfMissing:
    """``hostDisk`` with ``type: DiskOrCreate``: a sparse raw image at the operator's path,
    created only when missing; an existing file is never shrunk or overwritten."""

    capacity_bytes: int


@dataclass(frozen=True, slots=True)
class ContainerDisk:
    """``containerDisk``: a disk file inside an OCI image, used through a throw-away qcow2 overlay."""

    image: str
    path: str | None
    """Path of the disk inside the image; None: the single file under /disk."""
    pull_policy: str


@dataclass(frozen=True, slots=True)
class CloudInit:
    """``cloudInitNoCloud`` (ISO label ``cidata``) or ``cloudInitConfigDrive`` (``config-2``)."""

    flavour: str
    """``noCloud`` or ``configDrive``."""
    user_data: bytes | None
    network_data: bytes | None
    user_secret: str | None = None
    """Name of a Secret in the VMI's namespace holding the user data (Kubernetes only)."""
    network_secret: str | None = None


DiskSource = EmptyDisk | CreateIfMissing | ContainerDisk | CloudInit


def made_by_agent(source: DiskSource | None) -> bool:
    """Whether the disk's file lives in the agent's per-VMI directory."""
    return source is not None and not isinstance(source, CreateIfMissing)


def file_name(index: int, source: DiskSource) -> str:
    """``disk<index>.<ext>`` in the VMI's directory: index is the disk's place in ``disks[]``."""
    if isinstance(source, CloudInit):
        return f"disk{index}.iso"
    if isinstance(source, ContainerDisk):
        return f"disk{index}.qcow2"
    return f"disk{index}.raw"


def guest_dir(files_dir: str, uid: str) -> str:
    """The VMI's own directory under the agent's files directory (the uid is a validated UUID)."""
    return f"{files_dir.rstrip('/')}/{uid}"


def disk_format(source: DiskSource | None) -> str:
    return "qcow2" if isinstance(source, ContainerDisk) else "raw"
