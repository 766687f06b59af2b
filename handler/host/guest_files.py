"""The files a guest needs before its domain is defined, and their removal after it is undefined.

The reconciler calls ``prepare(vmi)`` before it defines or starts a domain and ``remove(uid)``
after it undefines one; nothing else here knows about reconciling. A VMI whose disks are all
plain hostDisks costs one loop over its disks and no file system access.

Files live in ``<files_dir>/<uid>/disk<N>.<ext>`` (handler/core/disk_sources.py). User data,
image references and Secret contents are data: handed to pycdlib, or to skopeo as single argv
items, never to a shell. Overlays are written in-process (handler/host/qcow2_overlay.py).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import structlog

from handler.core.cloudinit_data import iso_content
from handler.core.disk_sources import (
    SECRET_LIMIT_BYTES,
    CloudInit,
    ContainerDisk,
    CreateIfMissing,
    EmptyDisk,
    guest_dir,
)
from handler.core.refusal import Refusal
from handler.core.vmi import VMI, HostDisk
from handler.host.cloudinit_iso import write_iso
from handler.host.image_cache import Failed, Lookup, Pending, Ready
from handler.host.qcow2_overlay import write_overlay

log = structlog.get_logger("qat_handler.guest_files")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SECRET_KEYS = {"user": ("userdata", "userData"), "network": ("networkdata", "networkData")}


@dataclass(frozen=True, slots=True)
class Preparation:
    refusal: Refusal | None = None
    retry_after: float | None = None
    """Look again this soon (an image is still being fetched, or a file could not be made)."""


class SecretReader(Protocol):
    def read(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """The Secret's decoded data; None when it does not exist. Raises OSError when unreachable."""
        ...


class DiskImages(Protocol):
    """Where containerDisk base images come from: fetched on bare metal (ImageCache), or taken
    from the launcher pod's image in Kubernetes (handler/kube/container_disks.py)."""

    def lookup(self, disk: ContainerDisk, vmi: VMI, volume: str) -> Lookup: ...

    def close(self) -> None: ...


class _NotReady(Exception):
    def __init__(self, refusal: Refusal, retry_after: float) -> None:
        super().__init__(refusal.line())
        self.preparation = Preparation(refusal, retry_after)


class GuestFiles:
    def __init__(
        self,
        files_dir: Path,
        images: DiskImages | None = None,
        secrets: SecretReader | None = None,
        *,
        pending_retry_seconds: float = 1.0,
        failed_retry_seconds: float = 30.0,
    ) -> None:
        self.files_dir = files_dir
        self.images = images
        self.secrets = secrets
        self.pending_retry_seconds = pending_retry_seconds
        self.failed_retry_seconds = failed_retry_seconds

    def prepare(self, vmi: VMI) -> Preparation:
        disks = [disk for disk in vmi.disks if disk.source is not None]
        if not disks:
            return Preparation()
        folder = Path(guest_dir(str(self.files_dir), vmi.uid))
        try:
            # Everything that can refuse (Secrets, images, paths) is settled before any file is
            # written, so a refused VMI leaves nothing behind.
            writes = [self._plan_one(vmi, disk, folder) for disk in disks]
            self._make_dirs(folder)
            for write in writes:
                write()
        except _NotReady as not_ready:
            return not_ready.preparation
        except OSError as error:
            refusal = Refusal(
                "GuestFilesFailed",
                str(folder),
                f"could not be prepared ({error.strerror or error})",
                "check the state directory's space and permissions",
            )
            return Preparation(refusal, self.failed_retry_seconds)
        return Preparation()

    def close(self) -> None:
        if self.images is not None:
            self.images.close()

    def sweep(self, keep: set[str]) -> None:
        """Remove every VMI directory whose uid is not in ``keep``; anything else is left alone."""
        if not self.files_dir.is_dir():
            return
        for folder in self.files_dir.iterdir():
            if folder.name not in keep and _UUID.match(folder.name) and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                log.info("stale guest files removed", uid=folder.name)

    def remove(self, uid: str) -> None:
        """Delete the VMI's directory (ISOs, overlays, empty disks). hostDisk files are never touched."""
        if not _UUID.match(uid):
            return
        folder = self.files_dir / uid
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            log.info("guest files removed", uid=uid)

    def _make_dirs(self, folder: Path) -> None:
        # QEMU (libvirt's qemu user) must traverse to the files; it needs no listing.
        for path in (self.files_dir, folder):
            path.mkdir(mode=0o711, parents=True, exist_ok=True)
            path.chmod(0o711)

    def _plan_one(self, vmi: VMI, disk: HostDisk, folder: Path) -> Callable[[], None]:
        source, path = disk.source, folder / disk.path
        if isinstance(source, CloudInit):
            user = self._payload(vmi, disk, source.user_data, source.user_secret, "user")
            network = self._payload(vmi, disk, source.network_data, source.network_secret, "network")
            return partial(write_iso, iso_content(source, vmi.uid, vmi.name, user, network), path)
        if isinstance(source, EmptyDisk):
            return partial(_sparse, path, source.capacity_bytes)
        if isinstance(source, CreateIfMissing):
            return _disk_or_create(disk, source.capacity_bytes)
        if isinstance(source, ContainerDisk):
            return self._overlay(vmi, disk, source, path)
        return lambda: None

    def _payload(self, vmi: VMI, disk: HostDisk, inline: bytes | None, secret: str | None, kind: str) -> bytes | None:
        if secret is None:
            return inline
        field = "secretRef" if kind == "user" else "networkDataSecretRef"
        subject = f"volume {disk.name!r} {field} {secret!r}"
        if self.secrets is None:
            raise _NotReady(
                Refusal("InvalidSpec", subject, "needs Kubernetes to be read", "put the data inline on bare metal"),
                self.failed_retry_seconds,
            )
        try:
            data = self.secrets.read(vmi.namespace, secret)
        except OSError as error:
            raise _NotReady(
                Refusal("SecretUnreadable", subject, f"could not be read ({error})", "check the agent's API access"),
                self.failed_retry_seconds,
            ) from None
        value = next((data[key] for key in SECRET_KEYS[kind] if data and key in data), None)
        if value is None:
            problem = "does not exist" if data is None else f"has no key {' or '.join(SECRET_KEYS[kind])}"
            fix = f"create it in namespace {vmi.namespace} with key {SECRET_KEYS[kind][0]}"
            raise _NotReady(Refusal("SecretMissing", subject, problem, fix), self.failed_retry_seconds)
        if len(value) > SECRET_LIMIT_BYTES:
            raise _NotReady(
                Refusal("InvalidSpec", subject, f"holds {len(value)} bytes", f"keep it under {SECRET_LIMIT_BYTES}"),
                self.failed_retry_seconds,
            )
        return value

    def _overlay(self, vmi: VMI, disk: HostDisk, source: ContainerDisk, overlay: Path) -> Callable[[], None]:
        if overlay.exists():
            return lambda: None  # the guest's writes live until the VMI goes
        subject = f"volume {disk.name!r} containerDisk {source.image!r}"
        if self.images is None:
            fix = "run the agent with an image cache (bare metal) or a launcher pod that carries the image"
            raise _NotReady(Refusal("ContainerDiskFailed", subject, "has no image source", fix), 60.0)
        found = self.images.lookup(source, vmi, disk.name)
        if isinstance(found, Pending):
            refusal = Refusal("ImagePulling", subject, found.problem, "wait; the guest starts when it is ready")
            raise _NotReady(refusal, self.pending_retry_seconds)
        if isinstance(found, Failed):
            fix = "check the reference, the registry (--insecure-registry for plain HTTP) and the image's /disk file"
            raise _NotReady(Refusal("ContainerDiskFailed", subject, found.problem, fix), self.failed_retry_seconds)
        assert isinstance(found, Ready)
        return partial(write_overlay, found.path, found.format, overlay)


def _sparse(path: Path, size: int) -> None:
    """Make ``path`` a sparse file of ``size`` bytes unless it exists; never truncate an existing one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _disk_or_create(disk: HostDisk, size: int) -> Callable[[], None]:
    path = Path(disk.path)
    subject = f"hostDisk {disk.path}"
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise _NotReady(Refusal("InvalidSpec", subject, "exists but is not a file", "point it at an image"), 30.0)
        return lambda: None
    if not path.parent.is_dir():
        raise _NotReady(Refusal("InvalidSpec", subject, "has no parent directory", "create the directory"), 30.0)

    def create() -> None:
        _sparse(path, size)
        log.info("hostDisk created", path=disk.path, capacity=size)

    return create
