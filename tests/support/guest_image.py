"""A tiny real guest for libvirt tests: a Debian cloud kernel plus a busybox initramfs.

The kernel and busybox come from the Debian archive through ``apt-get download``; the
initramfs is written here as a gzip'd newc cpio, so its modes and owners are exact
(the root must be 0755: QEMU runs as ``libvirt-qemu`` under qemu:///system).

Everything is cached under ``/var/cache/qat-handler-tests`` (or ``$QAT_HANDLER_TEST_CACHE``).
A cached build is reused without asking apt again; set ``QAT_HANDLER_TEST_REFRESH=1`` to
re-resolve the newest kernel. Builds are serialised across processes by a lock file.

Variants:

``acpi``
    /init loads evdev and button, starts ``busybox acpid`` and prints :data:`BOOT_MARKER`
    once acpid holds an input device. The power button prints :data:`SHUTDOWN_MARKER` and
    powers off at once.
``noacpi``
    Prints :data:`BOOT_MARKER` and ignores the power button.
``interactive``
    As ``acpi``, plus networking and a shell: loads virtio-net (modules taken from the same
    kernel package), prints the hardware RNGs it sees (:data:`RNG_MARKER`), asks for a DHCP
    lease on eth0 with busybox ``udhcpc`` (printing :data:`IP_MARKER` and the address once
    bound), then runs a shell on the serial console.
``cidata``
    As ``acpi``, and first loads virtio-blk and iso9660 (with their dependencies), mounts each
    virtio disk that holds an ISO with a ``user-data`` file, and prints :data:`CIDATA_MARKER`
    followed by the instance id and the ``qat-marker:`` value found in that user-data; for any
    other virtio disk it prints :data:`DISK_MARKER` and the disk's first printable bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

BOOT_MARKER = "QAT-GUEST: booted"
SHUTDOWN_MARKER = "QAT-GUEST: power button pressed, powering off"
ERROR_MARKER = "QAT-GUEST: error"
CIDATA_MARKER = "QAT-GUEST: cidata"
DISK_MARKER = "QAT-GUEST: disk"

IP_MARKER = "QAT-GUEST: ip="
RNG_MARKER = "QAT-GUEST: hwrng="

VARIANTS = ("acpi", "noacpi", "interactive", "cidata")
KERNEL_CMDLINE = "console=ttyS0 panic=-1 quiet"

CACHE_ENV = "QAT_HANDLER_TEST_CACHE"
REFRESH_ENV = "QAT_HANDLER_TEST_REFRESH"
DEFAULT_CACHE_DIR = Path("/var/cache/qat-handler-tests")

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"

# Bump when the initramfs layout or the writer changes in a way the scripts don't show.
_FORMAT = "3"
_STATE_FILE = "sources.json"
# Kernel config symbol -> module path suffix under lib/modules/<release>/kernel/
# The cloud kernel builds these as modules; loaded in this order (dependencies first).
_DISK_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/cdrom/cdrom.ko",
    "fs/isofs/isofs.ko",
)
_ACPI_MODULES = {
    "CONFIG_INPUT_EVDEV": "drivers/input/evdev.ko",
    "CONFIG_ACPI_BUTTON": "drivers/acpi/button.ko",
}


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """What a domain needs for a direct kernel boot of the tiny guest."""

    variant: str
    kernel: Path
    initrd: Path
    cmdline: str
    kernel_release: str


class GuestImageError(RuntimeError):
    """The guest image could not be built."""


# --------------------------------------------------------------------------- public API


def cache_dir() -> Path:
    """The cache directory in use ($QAT_HANDLER_TEST_CACHE or the default)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def ensure_guest_image(variant: str = "acpi", *, refresh: bool | None = None) -> GuestImage:
    """Return the cached guest image for ``variant``, building what is missing.

    A second call with a warm cache does no subprocess work and returns in milliseconds.
    ``refresh`` (default: ``$QAT_HANDLER_TEST_REFRESH == "1"``) asks apt for the newest
    kernel again instead of reusing the one recorded in the cache.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown guest variant {variant!r}; expected one of {VARIANTS}")
    if refresh is None:
        refresh = os.environ.get(REFRESH_ENV) == "1"
    root = cache_dir()

    if not refresh:
        image = _cached_image(root, variant)
        if image is not None:
            return image

    _make_dir(root)
    _warn_if_not_traversable(root)
    with _locked(root / ".lock"):
        # Another process may have finished the build while we waited for the lock.
        if not refresh:
            image = _cached_image(root, variant)
            if image is not None:
                return image
        state = _ensure_sources(root, refresh=refresh)
        return _ensure_initrd(root, state, variant)


def domain_xml(
    image: GuestImage,
    name: str,
    serial_log: Path,
    *,
    domain_type: str = "qemu",
    memory_mib: int = 256,
    vcpus: int = 1,
    machine: str = "q35",
    extra_devices: str = "",
) -> str:
    """Libvirt XML for a direct-kernel-boot domain of ``image`` with its serial console in a file.

    ACPI is on and a guest power-off destroys the domain, so an ACPI shutdown ends in SHUTOFF.
    """
    return f"""<domain type={quoteattr(domain_type)}>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    <type arch='x86_64' machine={quoteattr(machine)}>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(image.initrd))}</initrd>
    <cmdline>{escape(image.cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path={quoteattr(str(serial_log))} append='off'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={quoteattr(str(serial_log))}/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
{extra_devices}
  </devices>
</domain>
"""


def read_serial(path: Path) -> str:
    """The serial log so far ('' if it does not exist yet)."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_for_serial(
    path: Path,
    marker: str,
    timeout: float,
    *,
    still_running: Callable[[], bool] | None = None,
    poll: float = 0.05,
) -> float:
    """Wait until ``marker`` appears in the serial log; return the seconds waited.

    Raises TimeoutError (with the log's tail) after ``timeout`` seconds, or as soon as
    ``still_running()`` returns False, or when the guest prints :data:`ERROR_MARKER`.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        text = read_serial(path)
        if marker in text:
            return time.monotonic() - start
        if ERROR_MARKER in text:
            raise TimeoutError(f"guest reported an error before {marker!r}:\n{_tail(text)}")
        if still_running is not None and not still_running():
            # One more read: the marker may have been flushed as the guest stopped.
            time.sleep(poll)
            text = read_serial(path)
            if marker in text:
                return time.monotonic() - start
            raise TimeoutError(f"guest stopped before printing {marker!r}:\n{_tail(text)}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{marker!r} not seen in {path} after {timeout:.0f}s:\n{_tail(text)}")
        time.sleep(poll)


# --------------------------------------------------------------------------- cache lookup


def _cached_image(root: Path, variant: str) -> GuestImage | None:
    state = _read_state(root)
    if state is None:
        return None
    kdir = root / state["kernel_dir"]
    bdir = root / state["busybox_dir"]
    if not (kdir / "vmlinuz").is_file() or not (bdir / "busybox").is_file():
        return None
    initrd = _initrd_path(root, state, variant)
    if not initrd.is_file():
        return None
    return GuestImage(
        variant=variant,
        kernel=kdir / "vmlinuz",
        initrd=initrd,
        cmdline=KERNEL_CMDLINE,
        kernel_release=state["kernel_release"],
    )


def _read_state(root: Path) -> dict[str, str] | None:
    try:
        data = json.loads((root / _STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    keys = ("kernel_package", "kernel_version", "kernel_release", "kernel_dir", "busybox_version", "busybox_dir")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
        return None
    return data


def _initrd_path(root: Path, state: dict[str, str], variant: str) -> Path:
    h = hashlib.sha256()
    for part in (
        _FORMAT,
        variant,
        state["kernel_dir"],
        state["busybox_dir"],
        _init_script(variant),
        _power_button_script(),
        _udhcpc_script() if variant == "interactive" else "",
    ):
        h.update(part.encode())
        h.update(b"\0")
    return root / "initrd" / f"{variant}-{h.hexdigest()[:16]}.cpio.gz"


# --------------------------------------------------------------------------- sources from apt


def _ensure_sources(root: Path, *, refresh: bool) -> dict[str, str]:
    """Make sure a kernel and busybox are extracted in the cache; return the state record."""
    state = None if refresh else _read_state(root)
    if (
        state is not None
        and (root / state["kernel_dir"] / "vmlinuz").is_file()
        and (root / state["busybox_dir"] / "busybox").is_file()
    ):
        return state

    _make_dir(root / "tmp")
    work = Path(tempfile.mkdtemp(prefix="src-", dir=root / "tmp"))
    try:
        kpkg, kver, bbver = _resolve_packages()
        kdir_name = f"kernel/{_safe(kpkg)}_{_safe(kver)}"
        bdir_name = f"busybox/{_safe(bbver)}"
        kdir, bdir = root / kdir_name, root / bdir_name
        wanted = []
        if not (kdir / "vmlinuz").is_file():
            wanted.append((kpkg, kver))
        if not (bdir / "busybox").is_file():
            wanted.append((BUSYBOX_PACKAGE, bbver))
        debs = _apt_download(wanted, work)
        if (kpkg, kver) in debs:
            _extract_kernel(debs[kpkg, kver], kdir, work)
        if (BUSYBOX_PACKAGE, bbver) in debs:
            _extract_busybox(debs[BUSYBOX_PACKAGE, bbver], bdir, work)
        release = json.loads((kdir / "meta.json").read_text())["release"]
        state = {
            "kernel_package": kpkg,
            "kernel_version": kver,
            "kernel_release": release,
            "kernel_dir": kdir_name,
            "busybox_version": bbver,
            "busybox_dir": bdir_name,
        }
        _write_file(root / _STATE_FILE, (json.dumps(state, indent=2) + "\n").encode(), 0o644)
        return state
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _resolve_packages() -> tuple[str, str, str]:
    """(kernel package, its version, busybox-static version): the newest apt offers.

    Runs ``apt-get update`` once if the package lists don't know the packages.
    """
    try:
        return _resolve_packages_once()
    except GuestImageError:
        _run(["apt-get", "update", "-qq"], what="apt-get update")
        return _resolve_packages_once()


def _resolve_packages_once() -> tuple[str, str, str]:
    stanzas = _apt_show([KERNEL_METAPACKAGE, BUSYBOX_PACKAGE])
    bb = stanzas.get(BUSYBOX_PACKAGE)
    if bb is None or "Version" not in bb:
        raise GuestImageError(f"apt offers no {BUSYBOX_PACKAGE}")
    kernel = None
    meta = stanzas.get(KERNEL_METAPACKAGE)
    if meta is not None:
        m = re.search(r"(linux-image-[0-9][^\s,(]*-cloud-amd64)\s*(?:\(=\s*([^)\s]+)\s*\))?", meta.get("Depends", ""))
        if m:
            kernel = (m.group(1), m.group(2))
    if kernel is None:
        kernel = _newest_cloud_kernel_by_name()
    kpkg, kver = kernel
    if kver is None:
        kver = _apt_show([kpkg]).get(kpkg, {}).get("Version")
        if kver is None:
            raise GuestImageError(f"apt offers no version of {kpkg}")
    return kpkg, kver, bb["Version"]


def _newest_cloud_kernel_by_name() -> tuple[str, str | None]:
    """Fallback without the metapackage: the highest ABI number that has a candidate."""
    out = _run(["apt-cache", "pkgnames", "linux-image-"], what="apt-cache pkgnames")
    names = []
    for name in out.split():
        m = re.fullmatch(r"linux-image-(\d+)\.(\d+)\.(\d+)-(\d+)-cloud-amd64", name)
        if m:
            names.append((tuple(int(x) for x in m.groups()), name))
    for _, name in sorted(names, reverse=True):
        version = _apt_show([name]).get(name, {}).get("Version")
        if version:
            return name, version
    raise GuestImageError("apt offers no linux-image-*-cloud-amd64 package")


def _apt_show(packages: list[str]) -> dict[str, dict[str, str]]:
    proc = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    # apt-cache exits 100 if any package is unknown but still prints the known ones.
    result: dict[str, dict[str, str]] = {}
    for block in proc.stdout.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1].isspace() or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Package" in fields:
            result.setdefault(fields["Package"], fields)
    if not result:
        raise GuestImageError(f"apt-cache show {' '.join(packages)} failed: {proc.stderr.strip()}")
    return result


def _apt_download(wanted: list[tuple[str, str]], work: Path) -> dict[tuple[str, str], Path]:
    if not wanted:
        return {}
    dl = work / "debs"
    _make_dir(dl)
    # _apt must be able to write here, or apt warns and downloads as root.
    os.chmod(dl, 0o777)
    args = [f"{pkg}={ver}" for pkg, ver in wanted]
    try:
        _run(["apt-get", "download", "-q", *args], what="apt-get download", cwd=dl)
    except GuestImageError:
        # Stale lists point at files the mirror no longer has: refresh once.
        _run(["apt-get", "update", "-qq"], what="apt-get update")
        _run(["apt-get", "download", "-q", *args], what="apt-get download", cwd=dl)
    found = {}
    for pkg, ver in wanted:
        matches = sorted(dl.glob(f"{pkg}_*.deb"))
        if len(matches) != 1:
            raise GuestImageError(f"apt-get download {pkg}={ver} left {matches}")
        found[pkg, ver] = matches[0]
    return found


def _deb_members(deb: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yield (path, content) of the regular files in ``deb`` whose path satisfies ``want``."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and want(name):
                    f = tar.extractfile(member)
                    assert f is not None
                    yield name, f.read()
        # Drain anything after the end-of-archive marker so dpkg-deb exits cleanly.
        proc.stdout.read()
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise GuestImageError(f"dpkg-deb --fsys-tarfile {deb.name} failed ({rc}): {err.strip()}")


def _extract_kernel(deb: Path, dest: Path, work: Path) -> None:
    out = Path(tempfile.mkdtemp(prefix="kernel-", dir=work))
    modules_dir = out / "modules"
    _make_dir(modules_dir)
    release = None
    config = ""
    modules: dict[str, bytes] = {}
    suffixes = tuple("/kernel/" + s for s in _ACPI_MODULES.values())

    def want(name: str) -> bool:
        return bool(re.fullmatch(r"boot/(vmlinuz|config)-[^/]+", name)) or (
            name.startswith(("lib/modules/", "usr/lib/modules/")) and name.endswith(suffixes)
        )

    for name, data in _deb_members(deb, want):
        if name.startswith("boot/vmlinuz-"):
            release = name.removeprefix("boot/vmlinuz-")
            _write_file(out / "vmlinuz", data, 0o644)
        elif name.startswith("boot/config-"):
            config = data.decode(errors="replace")
        else:
            modules[name.rsplit("/", 1)[1]] = data
    if release is None:
        raise GuestImageError(f"{deb.name} has no boot/vmlinuz-*")

    # Which of evdev/button the acpi variant must insmod: '=m' needs the file, '=y' is built in.
    needed = []
    for symbol, path in _ACPI_MODULES.items():
        m = re.search(rf"^{symbol}=([ym])$", config, re.M)
        if m is None:
            raise GuestImageError(f"{deb.name}: {symbol} is not enabled; the acpi guest cannot work")
        filename = path.rsplit("/", 1)[1]
        if m.group(1) == "m":
            if filename not in modules:
                raise GuestImageError(f"{deb.name}: {symbol}=m but {filename} is not in the package")
            _write_file(modules_dir / filename, modules[filename], 0o644)
            needed.append(filename)
    meta = {"package_file": deb.name, "release": release, "modules": needed}
    _write_file(out / "meta.json", (json.dumps(meta, indent=2) + "\n").encode(), 0o644)
    _install_dir(out, dest)


def _extract_busybox(deb: Path, dest: Path, work: Path) -> None:
    out = Path(tempfile.mkdtemp(prefix="busybox-", dir=work))
    found = False
    for _, data in _deb_members(deb, lambda n: n in ("bin/busybox", "usr/bin/busybox")):
        _write_file(out / "busybox", data, 0o755)
        found = True
    if not found:
        raise GuestImageError(f"{deb.name} has no bin/busybox")
    _install_dir(out, dest)


# --------------------------------------------------------------------------- initramfs


def _init_script(variant: str) -> str:
    if variant == "interactive":
        return _interactive_init(_init_script("acpi"))
    if variant == "noacpi":
        ready = f"""echo "{BOOT_MARKER} variant=noacpi uptime=$(uptime_s)"
"""
    else:
        ready = f"""for m in evdev button; do  # the ones built in (=y) are not in /lib/modules
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
acpid -f -c /etc/acpi -l /var/log/acpid.log &
acpid_pid=$!
# Ready once acpid holds an input event device (it scans /dev/input only at start).
n=0
until ls -l /proc/$acpid_pid/fd 2>/dev/null | grep -q /dev/input/event; do
  n=$((n + 1))
  if [ $n -gt 200 ] || ! kill -0 $acpid_pid 2>/dev/null; then
    echo "{ERROR_MARKER}: acpid has no input device (inputs: $(ls /dev/input 2>/dev/null))"
    break
  fi
  sleep 0.05
done
[ $n -le 200 ] && kill -0 $acpid_pid 2>/dev/null && \\
  echo "{BOOT_MARKER} variant=acpi uptime=$(uptime_s)"
"""
    if variant == "cidata":
        ready = _cidata_script() + ready.replace("variant=acpi", "variant=cidata")
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
uptime_s() {{ cut -d' ' -f1 /proc/uptime; }}
{ready}while true; do sleep 3600; done
"""


# Loaded in this order (each needs the ones before; see each module's depends=); none of them is
# built into the cloud kernel. virtio-rng shows whether the domain's <rng> reached the guest.
_NET_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/char/hw_random/virtio-rng.ko",
)


def _interactive_init(acpi_init: str) -> str:
    """The acpi guest, with eth0 up through DHCP before the boot marker and a shell instead of sleep."""
    names = " ".join(path.rsplit("/", 1)[1].removesuffix(".ko") for path in _NET_MODULES)
    network = f"""for m in {names}; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
echo "{RNG_MARKER}$(cat /sys/class/misc/hw_random/rng_available 2>/dev/null)"
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
  udhcpc -i eth0 -s /etc/udhcpc/default.script -t 30 -T 2 -A 3 -q >/dev/null 2>&1 &
fi
"""
    head, marker, tail = acpi_init.partition("acpid -f")
    body = head + network + marker + tail
    return body.replace("while true; do sleep 3600; done", "while true; do sh; done")


def _udhcpc_script() -> str:
    return f"""#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${{mask:-24}}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${{router%% *}}" dev "$interface"
    echo "{IP_MARKER}$ip" > /dev/console
    ;;
esac
"""


def _net_modules(root: Path, state: dict[str, str]) -> dict[str, bytes]:
    """virtio-net and what it needs, from the recorded kernel package (fetched again once if the
    cache predates the interactive guest). Called with the cache lock held."""
    ndir = root / state["kernel_dir"] / "net-modules"
    names = [path.rsplit("/", 1)[1] for path in _NET_MODULES]
    if not all((ndir / name).is_file() for name in names):
        _make_dir(root / "tmp")
        work = Path(tempfile.mkdtemp(prefix="net-", dir=root / "tmp"))
        try:
            debs = _apt_download([(state["kernel_package"], state["kernel_version"])], work)
            deb = debs[state["kernel_package"], state["kernel_version"]]
            suffixes = tuple("/kernel/" + path for path in _NET_MODULES)
            out = Path(tempfile.mkdtemp(prefix="net-modules-", dir=work))
            for name, data in _deb_members(deb, lambda n: n.endswith(suffixes)):
                _write_file(out / name.rsplit("/", 1)[1], data, 0o644)
            missing = [name for name in names if not (out / name).is_file()]
            if missing:
                raise GuestImageError(f"{deb.name} lacks {missing}; the interactive guest cannot network")
            _install_dir(out, ndir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {name: (ndir / name).read_bytes() for name in names}


def _cidata_script() -> str:
    loads = "".join(f"insmod /lib/modules/disk/{Path(m).name}\n" for m in _DISK_MODULES)
    return f"""{loads}mkdir -p /mnt
n=0
until ls /dev/vd? >/dev/null 2>&1 || [ $n -gt 100 ]; do n=$((n + 1)); sleep 0.05; done
for dev in /dev/vd?; do
  if mount -t iso9660 -o ro $dev /mnt 2>/dev/null; then
    if [ -f /mnt/user-data ]; then
      id=$(sed -n 's/^instance-id: *//p' /mnt/meta-data | tr -d '"')
      marker=$(sed -n 's/^.*qat-marker: *//p' /mnt/user-data)
      echo "{CIDATA_MARKER} dev=$dev instance-id=$id marker=$marker"
    fi
    umount /mnt
  else
    echo "{DISK_MARKER} dev=$dev head=$(head -c 48 $dev | tr -dc 'A-Za-z0-9=:-')"
  fi
done
"""


def _power_button_script() -> str:
    return f"""#!/bin/sh
echo "{SHUTDOWN_MARKER}" > /dev/console
sync
poweroff -f
"""


def _ensure_initrd(root: Path, state: dict[str, str], variant: str) -> GuestImage:
    initrd = _initrd_path(root, state, variant)
    kdir = root / state["kernel_dir"]
    if not initrd.is_file():
        busybox = (root / state["busybox_dir"] / "busybox").read_bytes()
        modules = {}
        if variant in ("acpi", "interactive", "cidata"):
            for name in json.loads((kdir / "meta.json").read_text())["modules"]:
                modules[name] = (kdir / "modules" / name).read_bytes()
        if variant == "interactive":
            modules.update(_net_modules(root, state))
        if variant == "cidata":
            disk_dir = _ensure_disk_modules(root, state)
            for module in _DISK_MODULES:
                modules["disk/" + Path(module).name] = (disk_dir / Path(module).name).read_bytes()
        cpio = _build_cpio(variant, busybox, modules)
        _make_dir(initrd.parent)
        _write_file(initrd, gzip.compress(cpio, compresslevel=6, mtime=0), 0o644)
    return GuestImage(
        variant=variant,
        kernel=kdir / "vmlinuz",
        initrd=initrd,
        cmdline=KERNEL_CMDLINE,
        kernel_release=state["kernel_release"],
    )


def _ensure_disk_modules(root: Path, state: dict[str, str]) -> Path:
    """The virtio-blk and iso9660 modules of the cached kernel, fetched once from its package."""
    folder = root / state["kernel_dir"] / "disk-modules"
    if all((folder / Path(m).name).is_file() for m in _DISK_MODULES):
        return folder
    _make_dir(root / "tmp")
    work = Path(tempfile.mkdtemp(prefix="disk-modules-", dir=root / "tmp"))
    try:
        package, version = state["kernel_package"], state["kernel_version"]
        deb = _apt_download([(package, version)], work)[package, version]
        out = work / "out"
        _make_dir(out)
        suffixes = tuple("/kernel/" + m for m in _DISK_MODULES)
        for name, data in _deb_members(deb, lambda n: n.endswith(suffixes)):
            _write_file(out / name.rsplit("/", 1)[1], data, 0o644)
        missing = [m for m in _DISK_MODULES if not (out / Path(m).name).is_file()]
        if missing:
            raise GuestImageError(f"{deb.name} lacks {', '.join(missing)}")
        _install_dir(out, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _build_cpio(variant: str, busybox: bytes, modules: dict[str, bytes]) -> bytes:
    w = _NewcWriter()
    w.directory(".")  # the root: 0755, or libvirt-qemu cannot traverse it
    for d in ("bin", "dev", "proc", "sys", "tmp", "run", "var", "var/log", "var/run", "etc", "lib", "lib/modules"):
        w.directory(d, 0o1777 if d == "tmp" else 0o755)
    w.char_device("dev/console", 5, 1, 0o600)
    w.file("bin/busybox", busybox, 0o755)
    w.symlink("bin/sh", "busybox")
    w.file("init", _init_script(variant).encode(), 0o755)
    if variant == "interactive":
        w.directory("etc/udhcpc")
        w.file("etc/udhcpc/default.script", _udhcpc_script().encode(), 0o755)
    if variant == "cidata":
        w.directory("lib/modules/disk")
    if variant in ("acpi", "interactive", "cidata"):
        for name, data in sorted(modules.items()):
            w.file(f"lib/modules/{name}", data, 0o644)
        w.directory("etc/acpi")
        # busybox acpid maps the power button key to the action "PWRF/00000080",
        # run relative to its config directory.
        w.directory("etc/acpi/PWRF")
        w.file("etc/acpi/PWRF/00000080", _power_button_script().encode(), 0o755)
    return w.finish()


class _NewcWriter:
    """Minimal writer for the 'newc' (070701) cpio format the kernel unpacks; owner root:root."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 0

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, 0o040000 | mode, b"", nlink=2)

    def file(self, name: str, data: bytes, mode: int) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int) -> None:
        self._entry(name, 0o020000 | mode, b"", rdev=(major, minor))

    def finish(self) -> bytes:
        self._ino = -1
        self._entry("TRAILER!!!", 0, b"", nlink=1)
        return bytes(self._out)

    def _entry(self, name: str, mode: int, data: bytes, *, nlink: int = 1, rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        raw_name = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw_name), 0)
        self._out += b"070701" + "".join(f"{v:08x}" for v in fields).encode() + raw_name
        self._pad()
        self._out += data
        self._pad()

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)


# --------------------------------------------------------------------------- file helpers


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_dir(path: Path) -> None:
    """mkdir -p, with every directory this creates (and ``path``) at least 0755."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in [*missing, path]:
        mode = d.stat().st_mode & 0o7777
        if mode & 0o755 != 0o755:
            os.chmod(d, mode | 0o755)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename) with an exact mode, whatever the umask."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _install_dir(src: Path, dest: Path) -> None:
    os.chmod(src, 0o755)
    _make_dir(dest.parent)
    if dest.exists():
        shutil.rmtree(dest)  # an incomplete earlier attempt; we hold the lock
    os.rename(src, dest)


def _warn_if_not_traversable(path: Path) -> None:
    for p in [path, *path.parents]:
        if not p.stat().st_mode & 0o001:
            warnings.warn(
                f"{p} is not world-traversable; QEMU (user libvirt-qemu) will not be able to read "
                f"the guest image under {path}",
                stacklevel=3,
            )
            return


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", text)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:]) or "<empty serial log>"


def _run(cmd: list[str], *, what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise GuestImageError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}".rstrip()
        )
    return proc.stdout
