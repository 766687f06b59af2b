"""The two initramfs images of the nested test, written as gzip'd newc cpio (root-owned, exact modes).

L1's /init is ``l1-init.sh`` (busybox); L2's is ``l2_init.c``, compiled here with
``gcc -static``: under TCG inside TCG each new process costs seconds, so L2 runs none.
The root directory is 0755 in both: ``mktemp -d`` style 0700 would stop anyone but root
from traversing ``/`` in the guest.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import subprocess
from pathlib import Path

from tests.support.guest_image import _NewcWriter as NewcWriter
from tests.support.nested.packages import NestedParts

HERE = Path(__file__).resolve().parent
L1_INIT = HERE / "l1-init.sh"
L1_CHANNEL = HERE / "l1-channel.sh"
L2_INIT = HERE / "l2_init.c"
LIBVIRT_CONFIG = HERE / "libvirt"

# What libvirtd and glibc want from the host's /etc: users and groups (root, libvirt-qemu,
# kvm), name-service config and the dynamic loader's cache (L1's /usr is the host's).
HOST_ETC = ("passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "hosts")


@dataclasses.dataclass(frozen=True)
class Share:
    """A host directory L1 mounts over virtio-9p at the same path."""

    tag: str
    path: Path
    writable: bool = False

    @property
    def mount_options(self) -> str:
        # The read-only trees do not change during a run, so L1 may cache them (much faster exec/import).
        return "rw" if self.writable else "ro,cache=loose"


class BuildError(RuntimeError):
    """The L2 init program did not compile."""


def l2_init_program(cache: Path) -> Path:
    """``l2_init.c`` compiled statically, cached by its source."""
    source = L2_INIT.read_bytes()
    binary = cache / f"l2-init-{hashlib.sha256(source).hexdigest()[:16]}"
    if not binary.is_file():
        tmp = binary.with_name(f".{binary.name}.{os.getpid()}.tmp")  # concurrent runs each build their own
        argv = ["gcc", "-static", "-Os", "-s", "-Wall", "-o", str(tmp), str(L2_INIT)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        except FileNotFoundError as error:
            raise BuildError("gcc is not installed (deploy/bootstrap.sh installs it)") from error
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        tmp.rename(binary)
    return binary


def write_l2_initrd(parts: NestedParts, out: Path, cache: Path) -> Path:
    w = NewcWriter()
    w.directory(".")
    for d in ("dev", "proc", "sys", "kmod"):
        w.directory(d)
    w.char_device("dev/console", 5, 1, 0o600)
    w.file("init", l2_init_program(cache).read_bytes(), 0o755)
    for module in parts.l2_modules:
        w.file(f"kmod/{module.name}", module.read_bytes(), 0o644)
    return _write(w, out)


def write_l1_initrd(parts: NestedParts, out: Path, shares: tuple[Share, ...], channel: Path) -> Path:
    w = NewcWriter()
    w.directory(".")
    dirs = ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "root", "usr", "usr/bin", "usr/sbin", "kmod")
    dirs += ("etc", "etc/nest", "etc/libvirt", "etc/ld.so.conf.d", "var", "var/tmp", "var/lib", "var/cache")
    dirs += ("var/lib/libvirt", "var/cache/libvirt", "var/log", "var/log/libvirt", "var/log/libvirt/qemu")
    for d in dirs:
        w.directory(d, 0o1777 if d in ("tmp", "var/tmp") else 0o755)
    # Debian 12 is merged-/usr: with the host's /usr mounted, /lib and /lib64 lead into it.
    w.symlink("lib", "usr/lib")
    w.symlink("lib64", "usr/lib64")
    w.symlink("var/run", "../run")
    w.char_device("dev/console", 5, 1, 0o600)
    w.file("bin/busybox", parts.busybox.read_bytes(), 0o755)
    w.symlink("bin/sh", "busybox")
    w.file("init", L1_INIT.read_bytes(), 0o755)
    w.file("etc/nest/channel.sh", L1_CHANNEL.read_bytes(), 0o755)
    w.file("etc/nest/channel", f"{channel}\n".encode(), 0o644)
    w.file("etc/nest/modules", "".join(f"{m.stem}\n" for m in parts.l1_modules).encode(), 0o644)
    lines = "".join(f"{s.tag} {s.path} {s.mount_options}\n" for s in shares)
    w.file("etc/nest/shares", lines.encode(), 0o644)
    for module in parts.l1_modules:
        w.file(f"kmod/{module.name}", module.read_bytes(), 0o644)
    for name in HOST_ETC:
        host = Path("/etc") / name
        if host.is_file():
            w.file(f"etc/{name}", host.read_bytes(), 0o644)
    for conf in sorted(Path("/etc/ld.so.conf.d").glob("*.conf")):
        w.file(f"etc/ld.so.conf.d/{conf.name}", conf.read_bytes(), 0o644)
    for conf in sorted(LIBVIRT_CONFIG.glob("*.conf")):
        w.file(f"etc/libvirt/{conf.name}", conf.read_bytes(), 0o644)
    w.file("etc/hostname", b"nest-l1\n", 0o644)
    return _write(w, out)


def _write(w: NewcWriter, out: Path) -> Path:
    out.write_bytes(gzip.compress(w.finish(), compresslevel=1, mtime=0))
    out.chmod(0o644)
    return out
