"""A libvirtd of our own, which a test or benchmark may stop and start at will (the shared one it may not).

On a machine others use (a test suite running agents on qemu:///system), an agent would adopt
their qat-handler domains and theirs ours. This runs the system's binaries in system mode, in a
private mount namespace where libvirt's state directories (and /etc/libvirt/qemu, where
persistent domains live) are bind-mounted from a scratch directory, reached as
``qemu:///system?socket=<scratch>/run/libvirt-sock``. virtlogd keeps the namespace alive, so
libvirtd can be stopped and started again inside it (with nsenter), as a daemon restart would:
running QEMU processes survive and the new libvirtd reattaches to them. Needs root, as
qemu:///system does. The tests and bench/ (``scale.py --private-libvirtd``) both use this one.
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


class PrivateLibvirtd:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.uri = f"qemu:///system?socket={scratch}/run/libvirt-sock"

    @classmethod
    def serving(cls, uri: str) -> PrivateLibvirtd:
        """The daemon behind ``qemu:///system?socket=<scratch>/run/libvirt-sock``."""
        return cls(Path(uri.split("socket=", 1)[1]).parent.parent)

    def start_all(self) -> None:
        # The mount points exist once the system's libvirtd has run; on a fresh host they may not.
        mounts = "".join(
            f"mkdir -p {target}\nmount --bind {self.scratch / name} {target}\n" for target, name in PRIVATE.items()
        )
        script = mounts + f"virtlogd -d -p {self._pid_file('virtlogd')}\n"
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], check=True)
        self.start()

    def start(self, timeout: float = 60.0) -> None:
        """libvirtd, in virtlogd's namespace; returns once it answers."""
        namespace = f"/proc/{self._pid('virtlogd')}/ns/mnt"
        subprocess.run(["nsenter", f"--mount={namespace}", "libvirtd", "-d", "-p", str(self._pid_file("libvirtd"))],
                       check=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, daemon: str = "libvirtd", timeout: float = 30.0) -> None:
        pid = self._pid(daemon)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)

    def answers(self) -> bool:
        try:
            libvirt.open(self.uri).close()
            return True
        except libvirt.libvirtError:
            return False

    def remove_domains(self) -> None:
        """Everything on this daemon is ours; a stopped libvirtd would leave QEMU running."""
        with contextlib.suppress(libvirt.libvirtError):
            conn = libvirt.open(self.uri)
            for dom in conn.listAllDomains(0):
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
            conn.close()

    def _pid_file(self, daemon: str) -> Path:
        return self.scratch / f"{daemon}.pid"

    def _pid(self, daemon: str) -> int:
        return int(self._pid_file(daemon).read_text().strip())


@contextlib.contextmanager
def private_libvirtd(parent: Path = Path("/var/tmp")) -> Iterator[PrivateLibvirtd]:
    """Both daemons running; on exit every domain is removed and both are stopped."""
    scratch = Path(tempfile.mkdtemp(prefix="qat-it-libvirtd-", dir=parent))
    scratch.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach its domain directories
    for name in PRIVATE.values():
        (scratch / name).mkdir(mode=0o755)
    daemon = PrivateLibvirtd(scratch)
    try:
        daemon.start_all()
        yield daemon
    finally:
        daemon.remove_domains()
        for name in ("libvirtd", "virtlogd"):
            with contextlib.suppress(OSError, ValueError):
                daemon.stop(name)
        shutil.rmtree(scratch, ignore_errors=True)
