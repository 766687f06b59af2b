"""containerDisk images on bare metal: fetched with skopeo into a cache keyed by digest.

``lookup`` never blocks on the network: the first call for an image starts a fetch on the
cache's own small thread pool and answers Pending; the reconciler looks again shortly. A
failed fetch or an unusable image is remembered for ``retry_seconds`` and answered as Failed,
so one bad image refuses its VMIs and delays nothing else.

Layout under the cache root:
  refs/<sha256 of the source>    the digest last fetched for that source (IfNotPresent reuse)
  disks/<digest hex>/<file>      the disk file from that image, read-only (a backing file)
  tmp/                           skopeo's copies while a fetch runs
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from handler.core.disk_sources import ContainerDisk
from handler.core.image_ref import ImageSource, parse_image
from handler.core.vmi import VMI
from handler.host.oci_layout import LayoutError, extract_disk, manifest_digest, tagged

log = structlog.get_logger("qat_handler.images")


@dataclass(frozen=True, slots=True)
class Ready:
    path: Path
    format: str
    """``qcow2`` or ``raw``: given to the overlay as its backing format, never probed."""


@dataclass(frozen=True, slots=True)
class Pending:
    problem: str = "is being fetched"


@dataclass(frozen=True, slots=True)
class Failed:
    problem: str


Lookup = Ready | Pending | Failed


class ImageCache:
    def __init__(
        self,
        root: Path,
        store: Path | None = None,
        *,
        insecure_registries: tuple[str, ...] = (),
        skopeo: str = "skopeo",
        timeout_seconds: float = 900.0,
        retry_seconds: float = 60.0,
        workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.store = store
        """An OCI layout whose images, named by their full reference, are used without fetching."""
        self.insecure_registries = frozenset(insecure_registries)
        """Registries (``host[:port]``) reached over plain HTTP, such as a registry on the host itself."""
        self.skopeo = skopeo
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-fetch")
        self._lock = threading.Lock()
        self._running: set[tuple[str, str | None]] = set()
        self._failed: dict[tuple[str, str | None], tuple[float, str]] = {}
        self._processes: set[subprocess.Popen[str]] = set()
        self._fetched: set[tuple[str, str | None]] = set()
        """Sources fetched by this agent run: ``Always`` pulls once per run, not once per look."""
        self.on_done: Callable[[], None] = lambda: None
        """Called from a fetch thread when a fetch ends, so the waiting VMIs are looked at again."""

    def lookup(self, disk: ContainerDisk, vmi: VMI | None = None, volume: str = "") -> Lookup:
        """``vmi`` and ``volume`` are not needed here: a fetched image serves every VMI."""
        key = (disk.image, disk.path)
        with self._lock:
            if key in self._running:
                return Pending()
            failed = self._failed.get(key)
            if failed is not None and self.clock() < failed[0]:
                return Failed(failed[1])
            cached = self._cached(disk)
            fresh = disk.pull_policy != "Always" or key in self._fetched
            if cached is not None and fresh:
                return cached
            if disk.pull_policy == "Never":
                return Failed("is not in the image cache and imagePullPolicy is Never")
            self._failed.pop(key, None)
            self._running.add(key)
        self._pool.submit(self._fetch_job, disk, key)
        return Pending()

    def close(self) -> None:
        """Stop fetching: queued fetches are dropped and running skopeo processes ended."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = list(self._processes)
        for process in running:
            process.kill()

    # -- the cache on disk -----------------------------------------------------------------
    def _source(self, disk: ContainerDisk) -> ImageSource:
        if self.store is not None and tagged(self.store, disk.image):
            return ImageSource("oci", str(self.store), disk.image)
        return parse_image(disk.image, "containerDisk.image")

    def _ref_file(self, disk: ContainerDisk) -> Path:
        name = f"{self._source(disk).skopeo()}\n{disk.path or ''}"
        return self.root / "refs" / hashlib.sha256(name.encode()).hexdigest()

    def _cached(self, disk: ContainerDisk) -> Ready | None:
        try:
            digest = self._ref_file(disk).read_text().strip()
        except OSError:
            return None
        folder = self.root / "disks" / digest
        files = [p for p in folder.iterdir()] if folder.is_dir() else []
        return Ready(files[0], disk_format_of(files[0].name)) if len(files) == 1 else None

    # -- fetching (on the pool) ------------------------------------------------------------
    def _fetch_job(self, disk: ContainerDisk, key: tuple[str, str | None]) -> None:
        started = time.monotonic()
        try:
            self._fetch(disk)
        except _FetchError as error:
            with self._lock:
                self._failed[key] = (self.clock() + self.retry_seconds, str(error))
            log.warning("image fetch failed", image=disk.image, error=str(error))
        except Exception as error:  # never let a pool thread die silently
            with self._lock:
                self._failed[key] = (self.clock() + self.retry_seconds, f"could not be fetched ({error})")
            log.exception("image fetch crashed", image=disk.image)
        else:
            with self._lock:
                self._fetched.add(key)
            log.info("image fetched", image=disk.image, seconds=round(time.monotonic() - started, 2))
        finally:
            with self._lock:
                self._running.discard(key)
            self.on_done()

    def _fetch(self, disk: ContainerDisk) -> None:
        source = self._source(disk)
        for part in ("refs", "disks", "tmp"):
            (self.root / part).mkdir(parents=True, exist_ok=True, mode=0o755)
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.root / "tmp"))
        try:
            layout = work / "layout"
            self._skopeo_copy(source, layout)
            try:
                digest = manifest_digest(layout, "image").removeprefix("sha256:")
                if disk.path is not None:  # another file of the same image is another cache entry
                    digest += "-" + hashlib.sha256(disk.path.encode()).hexdigest()[:12]
                folder = self.root / "disks" / digest
                if not folder.is_dir():
                    staged = work / "disk"
                    staged.mkdir()
                    inner = extract_disk(layout, "sha256:" + digest[:64], disk.path, staged / "file")
                    target = staged / f"disk{disk_suffix(inner)}"
                    (staged / "file").rename(target)
                    check_image(target, disk_format_of(target.name))
                    target.chmod(0o444)
                    staged.chmod(0o755)
                    staged.rename(folder)
            except LayoutError as error:
                raise _FetchError(f"is not a usable disk image ({error})") from None
            _write_atomic(self._ref_file(disk), digest)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _skopeo_copy(self, source: ImageSource, layout: Path) -> None:
        argv = [self.skopeo, "copy", "--quiet"]
        if source.transport == "docker" and source.location.split("/", 1)[0] in self.insecure_registries:
            argv.append("--src-tls-verify=false")
        argv += [source.skopeo(), f"oci:{layout}:image"]
        try:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except OSError as error:
            raise _FetchError(f"could not be fetched: {self.skopeo} cannot run ({error.strerror})") from None
        with self._lock:
            self._processes.add(process)
        try:
            _, stderr = process.communicate(timeout=self.timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise _FetchError(f"could not be fetched within {self.timeout_seconds:.0f} s") from None
        finally:
            with self._lock:
                self._processes.discard(process)
        if process.returncode != 0:
            lines = [line for line in stderr.strip().splitlines() if line.strip()]
            raise _FetchError(f"could not be fetched ({lines[-1][-300:] if lines else f'exit {process.returncode}'})")


class _FetchError(Exception):
    pass


def disk_suffix(inner: str) -> str:
    return ".qcow2" if inner.endswith(".qcow2") else ".img"


def disk_format_of(file_name: str) -> str:
    return "qcow2" if file_name.endswith(".qcow2") else "raw"


def check_image(path: Path, fmt: str) -> None:
    """A qcow2 must open as one (a corrupt header refuses the VMI now, not at boot)."""
    if fmt != "qcow2":
        return
    argv = ["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise LayoutError(f"its qcow2 disk is corrupt: {tail[0][-200:]}")
    info = json.loads(done.stdout)
    # A qcow2 from an image must stand alone: a backing or data file would name a host path.
    data_file = info.get("format-specific", {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        raise LayoutError("its qcow2 disk refers to another file; flatten it with qemu-img convert")


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text + "\n")
    temporary.replace(path)
