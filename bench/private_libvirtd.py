"""A libvirtd of our own: the system's binary in system mode, with its own state, for the restart part.

On a machine others use (a test suite running agents on qemu:///system), our agent would adopt
their qat-handler domains and theirs ours. This starts ``virtlogd`` and ``libvirtd`` in a
private mount namespace where libvirt's state directories (and /etc/libvirt/qemu, where
persistent domains live) are bind-mounted from a scratch directory. The daemon is reached
as ``qemu:///system?socket=<scratch>/run/libvirt-sock``. Needs root, as qemu:///system does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt

PRIVATE = {
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/cache/libvirt": "cache",
    "/var/log/libvirt": "log",
    "/etc/libvirt/qemu": "etc-qemu",
}
DAEMONS = ("virtlogd", "libvirtd")


@contextlib.contextmanager
def private_libvirtd(parent: Path) -> Iterator[str]:
    """Start the daemons, yield their URI; on exit remove every domain and stop them."""
    scratch = Path(tempfile.mkdtemp(prefix="qat-bench-libvirtd-", dir=parent))
    scratch.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach its domain directories
    for name in PRIVATE.values():
        (scratch / name).mkdir(mode=0o755)
    uri = f"qemu:///system?socket={scratch}/run/libvirt-sock"
    try:
        _start(scratch)
        _wait_for(uri)
        yield uri
    finally:
        _remove_domains(uri)
        for daemon in reversed(DAEMONS):
            _stop(scratch / f"{daemon}.pid")
        shutil.rmtree(scratch, ignore_errors=True)


def _start(scratch: Path) -> None:
    mounts = "".join(f"mount --bind {scratch / name} {target}\n" for target, name in PRIVATE.items())
    daemons = "".join(f"{daemon} -d -p {scratch / daemon}.pid\n" for daemon in DAEMONS)
    subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", mounts + daemons],
        check=True,
        capture_output=True,
    )


def _wait_for(uri: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            libvirt.open(uri).close()
            return
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _remove_domains(uri: str) -> None:
    """Everything on this daemon is ours; a stopped libvirtd would leave QEMU running."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    for dom in conn.listAllDomains(0):
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()
    conn.close()


def _stop(pid_file: Path, timeout: float = 10.0) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
