"""Make sure a real libvirtd (with virtlogd) serves qemu:///system for the tests.

Nothing starts libvirtd on the test machines (systemd is not PID 1), so the tests do it
themselves, the way a unit file would: runtime directories, /dev/kvm permissions as udev
would set them, a large RLIMIT_MEMLOCK, then ``virtlogd -d`` and ``libvirtd -d``.

Everything is idempotent: running daemons are left alone, and nothing is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import resource
import stat
import subprocess
import tempfile
import time
from pathlib import Path

LIBVIRT_URI = "qemu:///system"
KVM_DEVICE = Path("/dev/kvm")
KVM_GROUP = "kvm"
RUNTIME_DIRS = (Path("/var/log/libvirt"), Path("/run/libvirt"), Path("/var/lib/libvirt"))
LIBVIRTD_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
DEFAULT_TIMEOUT = 60.0


class LibvirtdError(RuntimeError):
    """libvirtd could not be started or reached."""


@dataclasses.dataclass(frozen=True)
class LibvirtdStatus:
    """What :func:`ensure_libvirtd` found and did."""

    uri: str
    started_libvirtd: bool
    started_virtlogd: bool
    kvm_permissions_fixed: bool
    libvirt_version: str
    seconds: float


def process_ids(name: str) -> list[int]:
    """PIDs whose command name is exactly ``name`` (like ``pgrep -x``), zombies excluded."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as f:
                data = f.read()
        except OSError:
            continue
        # "pid (comm) state ...": comm may contain spaces and parentheses.
        comm = data[data.find("(") + 1 : data.rfind(")")]
        state = data[data.rfind(")") + 2 : data.rfind(")") + 3]
        if comm == name[:15] and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def is_running(name: str) -> bool:
    return bool(process_ids(name))


def fix_kvm_permissions(device: Path = KVM_DEVICE, group: str = KVM_GROUP) -> bool:
    """Give ``device`` the owner group and 0660 mode udev would; return True if it changed.

    Without this /dev/kvm stays root:root 0600, libvirt-qemu cannot open it, and libvirtd
    re-probes QEMU on every defineXML (30-55 s each).
    """
    try:
        st = device.stat()
    except FileNotFoundError:
        return False  # no KVM at all: TCG domains still work
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    changed = False
    if st.st_gid != gid:
        os.chown(device, -1, gid)
        changed = True
    if stat.S_IMODE(st.st_mode) & 0o660 != 0o660:
        os.chmod(device, stat.S_IMODE(st.st_mode) | 0o660)
        changed = True
    return changed


def _raise_memlock() -> None:
    """In the daemon's child process: vfio pins guest memory, so let QEMU lock all of it."""
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))


def start_daemon(name: str, socket: Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Run ``<name> -d`` (it forks into the background) and wait for its socket to appear."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                [name, "-d"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd="/",
                preexec_fn=_raise_memlock,
                start_new_session=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as e:
            raise LibvirtdError(f"{name} is not installed (run deploy/bootstrap.sh)") from e
        err.seek(0)
        output = err.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise LibvirtdError(f"{name} -d exited with {proc.returncode}: {output}")
    deadline = time.monotonic() + timeout
    while socket is not None and not socket.exists():
        if time.monotonic() > deadline:
            raise LibvirtdError(f"{name} started but {socket} did not appear within {timeout:.0f}s")
        if not is_running(name):
            raise LibvirtdError(f"{name} exited right after starting: {output}")
        time.sleep(0.05)


def wait_for_connection(uri: str = LIBVIRT_URI, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Wait until ``libvirt.open(uri)`` works; return the library version as 'X.Y.Z'."""
    import libvirt

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as e:
            if time.monotonic() > deadline:
                raise LibvirtdError(f"cannot connect to {uri} after {timeout:.0f}s: {e}") from e
            time.sleep(0.2)
            continue
        try:
            conn.getCapabilities()  # proves the hypervisor driver answers, not just the socket
            v = conn.getLibVersion()
        finally:
            conn.close()
        return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"


def ensure_libvirtd(uri: str = LIBVIRT_URI, timeout: float = DEFAULT_TIMEOUT) -> LibvirtdStatus:
    """Make sure virtlogd and libvirtd run and ``uri`` answers. Safe to call any number of times."""
    t0 = time.monotonic()
    need_start = not is_running("virtlogd") or not is_running("libvirtd")
    if need_start and os.geteuid() != 0:
        raise LibvirtdError("libvirtd/virtlogd are not running and starting them needs root")

    kvm_fixed = False
    if os.geteuid() == 0:
        for d in RUNTIME_DIRS:
            d.mkdir(parents=True, exist_ok=True)
        # Before libvirtd starts, so its cached QEMU capabilities see a usable /dev/kvm.
        kvm_fixed = fix_kvm_permissions()

    started_virtlogd = started_libvirtd = False
    if not is_running("virtlogd"):
        start_daemon("virtlogd", VIRTLOGD_SOCKET, timeout)
        started_virtlogd = True
    if not is_running("libvirtd"):
        start_daemon("libvirtd", LIBVIRTD_SOCKET, timeout)
        started_libvirtd = True

    version = wait_for_connection(uri, timeout)
    return LibvirtdStatus(
        uri=uri,
        started_libvirtd=started_libvirtd,
        started_virtlogd=started_virtlogd,
        kvm_permissions_fixed=kvm_fixed,
        libvirt_version=version,
        seconds=time.monotonic() - t0,
    )


if __name__ == "__main__":
    print(ensure_libvirtd())
