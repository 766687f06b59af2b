"""containerDisk images for tests: an OCI layout made with umoci, and a local registry.

The registry is Debian's ``docker-registry`` on 127.0.0.1 with a free port, started here and
stopped when the test ends; it speaks plain HTTP, so the agent is told it is insecure
(``--insecure-registry``). No outside registry is ever contacted.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.http_probe import free_port


def have_tools(*names: str) -> bool:
    return all(shutil.which(name) for name in names)


def run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed: {done.stderr.strip()[-500:]}")


def qcow2_disk(path: Path, size_mib: int = 16, data: bytes = b"") -> Path:
    """A small qcow2 image with ``data`` at its start."""
    raw = path.with_suffix(".raw")
    with raw.open("wb") as out:
        out.write(data)
        out.truncate(size_mib << 20)
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    raw.unlink()
    return path


def disk_layout(layout: Path, name: str, files: dict[str, Path | bytes]) -> Path:
    """Add an image ``name`` to the OCI layout at ``layout`` whose rootfs holds ``files``
    (path in the image -> file to copy, or bytes). Made with umoci, as an operator would."""
    if not (layout / "index.json").exists():
        run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:{name}")
    with tempfile.TemporaryDirectory(prefix="bundle-") as scratch:
        bundle = Path(scratch) / "bundle"
        run("umoci", "unpack", "--rootless", "--image", f"{layout}:{name}", str(bundle))
        for inner, content in files.items():
            target = bundle / "rootfs" / inner.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                shutil.copyfile(content, target)
        run("umoci", "repack", "--image", f"{layout}:{name}", str(bundle))
    return layout


@dataclass(frozen=True)
class Registry:
    address: str
    """``127.0.0.1:<port>``"""

    def push(self, layout: Path, name: str, reference: str) -> str:
        """Copy ``layout:name`` to ``<address>/<reference>``; returns the pushed reference."""
        target = f"{self.address}/{reference}"
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{name}", f"docker://{target}")
        return target


@contextlib.contextmanager
def local_registry(work: Path) -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1, serving plain HTTP from a directory under ``work``."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {work / 'registry-data'}\nhttp:\n  addr: {address}\n"
    )
    log = (work / "registry.log").open("wb")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (work / "registry.log").read_text()[-500:]
                    raise RuntimeError(f"docker-registry did not start: {tail}") from error
                time.sleep(0.1)
        yield Registry(address)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
