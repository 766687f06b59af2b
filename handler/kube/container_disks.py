"""containerDisks in Kubernetes: kubelet pulls the image as a container of the launcher pod,
as KubeVirt does; the agent never pulls.

The launcher pod carries one container per containerDisk volume, named ``volume<volume name>``
(KubeVirt's naming), running the disk's image with a long-lived process from a shared volume
(the images hold only /disk). Once kubelet reports that container running, the agent finds its
process on the host (the container ID in ``<host-root>/proc/<pid>/cgroup``: the host's /proc
mounted there, as node exporters do, and CAP_SYS_PTRACE to open another process's root),
reads the disk
through that process's root (``/proc/<pid>/root/disk/...``) and copies it once into the image
cache, keyed by the image digest kubelet reports (``imageID``). QEMU runs under the node's
libvirtd, outside the pod, and cannot open another process's root; the cached copy is what
the overlay is based on, and every later VMI of the same image reuses it.

A failed copy is not final: it is tried again once ``retry_seconds`` have passed, or at once
when the launcher's container is another one (a restarted container, a new pod). A copy that
takes longer than ``timeout_seconds`` is given up, so one stuck image never holds a copy
thread for good.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from handler.core.disk_sources import ContainerDisk
from handler.core.launcher_disks import container_name
from handler.core.vmi import VMI
from handler.host.image_cache import Failed, Lookup, Pending, Ready, check_image, disk_format_of, disk_suffix
from handler.host.oci_layout import DISK_SUFFIXES, LayoutError
from handler.kube.launcher_pods import CREATED_BY_LABEL

log = structlog.get_logger("qat_handler.container_disks")

PodLister = Callable[[], Iterable[Mapping[str, Any]]]
"""The launcher pods on this node, as the API returns them (the agent's pod informer cache)."""
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_CONTAINER_ID = re.compile(r"^[a-z0-9-]+://([0-9a-f]{12,128})$")
_CHUNK = 1 << 20
_NO_PTRACE = "cannot be read from the launcher container (the agent needs CAP_SYS_PTRACE)"


@dataclass(frozen=True, slots=True)
class _Failure:
    container_id: str
    """The container the copy was tried from: another container is tried at once."""
    problem: str
    retry_at: float


class _CopyTooSlow(Exception):
    pass


class LauncherContainerDisks:
    def __init__(
        self,
        pods: PodLister,
        proc: Path,
        cache_root: Path,
        node_name: str,
        *,
        timeout_seconds: float = 900.0,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pods = pods
        self.proc = proc
        """The host's /proc (``<host-root>/proc``)."""
        self.cache_root = cache_root
        self.node_name = node_name
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="disk-copy")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._failed: dict[str, _Failure] = {}

    def lookup(self, disk: ContainerDisk, vmi: VMI, volume: str) -> Lookup:
        status = self._container_status(vmi, volume)
        if isinstance(status, (Pending, Failed)):
            return status
        digest, container_id = status
        entry = digest + ("" if disk.path is None else "-" + hashlib.sha256(disk.path.encode()).hexdigest()[:12])
        folder = self.cache_root / "disks" / entry
        files = list(folder.iterdir()) if folder.is_dir() else []
        if len(files) == 1:
            return Ready(files[0], disk_format_of(files[0].name))
        with self._lock:
            failure = self._failed.get(entry)
            if failure is not None and failure.container_id == container_id and self.clock() < failure.retry_at:
                return Failed(failure.problem)
            self._failed.pop(entry, None)
            if entry in self._running:
                return Pending("is being copied from the launcher pod's image")
            self._running.add(entry)
        self._pool.submit(self._copy_job, entry, container_id, disk.path, folder)
        return Pending("is being copied from the launcher pod's image")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _container_status(self, vmi: VMI, volume: str) -> tuple[str, str] | Pending | Failed:
        pods = [
            p
            for p in self.pods()
            if p.get("metadata", {}).get("namespace") == vmi.namespace
            and (p.get("metadata", {}).get("labels") or {}).get(CREATED_BY_LABEL) == vmi.uid
            and p.get("spec", {}).get("nodeName") == self.node_name
        ]
        if not pods:
            return Pending("waits for the launcher pod on this node")
        name = container_name(volume)
        statuses = pods[0].get("status", {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == name), None)
        if status is None:
            spec_names = [c.get("name") for c in pods[0].get("spec", {}).get("containers", [])]
            if name not in spec_names:
                return Failed(f"has no container {name} in its launcher pod (the pod must carry the image)")
            return Pending("waits for kubelet to pull the image")
        if "running" not in (status.get("state") or {}):
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                return Failed(f"could not be pulled by kubelet ({reason}: {waiting.get('message', '')[:200]})")
            return Pending("waits for kubelet to pull the image")
        digest = _DIGEST.search(str(status.get("imageID", "")))
        container = _CONTAINER_ID.match(str(status.get("containerID", "")))
        if digest is None or container is None:
            return Pending("waits for kubelet to report the image digest")
        return digest.group(1), container.group(1)

    def _copy_job(self, entry: str, container_id: str, inner: str | None, folder: Path) -> None:
        try:
            self._copy(container_id, inner, folder)
            log.info("containerDisk copied from its launcher container", entry=entry)
        except PermissionError:
            self._fail(entry, container_id, _NO_PTRACE)
            log.warning("containerDisk copy not permitted", entry=entry)
        except _CopyTooSlow:
            problem = f"could not be copied from the launcher container within {self.timeout_seconds:g} s"
            self._fail(entry, container_id, problem)
            log.warning("containerDisk copy too slow", entry=entry, timeout_seconds=self.timeout_seconds)
        except (OSError, LayoutError) as error:
            self._fail(entry, container_id, f"is not a usable disk image ({error})")
            log.warning("containerDisk copy failed", entry=entry, error=str(error))
        except Exception as error:  # never let a pool thread die silently
            self._fail(entry, container_id, f"could not be copied from the launcher container ({error})")
            log.exception("containerDisk copy crashed", entry=entry)
        finally:
            with self._lock:
                self._running.discard(entry)

    def _copy(self, container_id: str, inner: str | None, folder: Path) -> None:
        deadline = self.clock() + self.timeout_seconds
        source = _disk_in(self._container_root(container_id), inner)
        (self.cache_root / "tmp").mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix="copy-", dir=self.cache_root / "tmp"))
        try:
            target = staged / f"disk{disk_suffix(source.name)}"
            with source.open("rb") as reader, target.open("wb") as writer:
                self._copy_until(reader, writer, deadline)
            check_image(target, disk_format_of(target.name))
            target.chmod(0o444)
            staged.chmod(0o755)
            folder.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(folder)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def _copy_until(self, reader: IO[bytes], writer: IO[bytes], deadline: float) -> None:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if self.clock() > deadline:
                raise _CopyTooSlow

    def _fail(self, entry: str, container_id: str, problem: str) -> None:
        with self._lock:
            self._failed[entry] = _Failure(container_id, problem, self.clock() + self.retry_seconds)

    def _container_root(self, container_id: str) -> Path:
        """The root of the container's process, found by its ID in the host's cgroup files."""
        if not (self.proc / "self").exists() and not any(self.proc.glob("[0-9]*")):
            raise LayoutError(f"the host's processes are not visible at {self.proc} (mount the host's /proc there)")
        for cgroup in self.proc.glob("[0-9]*/cgroup"):
            try:
                if container_id in cgroup.read_text():
                    return cgroup.parent / "root"
            except OSError:
                continue
        raise LayoutError(f"no process of container {container_id[:12]} on this host")


def _disk_in(root: Path, inner: str | None) -> Path:
    """The disk file inside the container's root. No component may be a symlink: an image's
    absolute link would resolve against the agent's root, that is, the host's files."""
    if inner is None:
        _no_links(root, "disk")
        disks = [p for p in (root / "disk").glob("*") if p.name.endswith(DISK_SUFFIXES)]
        if len(disks) != 1:
            raise LayoutError(f"the image holds {len(disks)} disks under /disk; set containerDisk.path")
        inner = f"/disk/{disks[0].name}"
    candidate = _no_links(root, inner.lstrip("/"))
    if not candidate.is_file():
        raise LayoutError(f"the image has no file {inner}")
    return candidate


def _no_links(root: Path, relative: str) -> Path:
    path = root
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            raise LayoutError(f"/{relative} in the image goes through a symlink")
    return path
