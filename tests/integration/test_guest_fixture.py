"""The tiny guest and the libvirtd fixture, proven with plain libvirt-python on qemu:///system.

Both variants are booted at once (module fixture) so their TCG boots overlap:
  * ``acpi`` powers off on the ACPI power button: SHUTOFF, reason SHUTDOWN, marker in the log;
  * ``noacpi`` ignores it and stays running until destroyed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.support.guest_image import (
    BOOT_MARKER,
    SHUTDOWN_MARKER,
    VARIANTS,
    GuestImage,
    domain_xml,
    ensure_guest_image,
    read_serial,
    wait_for_serial,
)

pytestmark = [pytest.mark.libvirtd, pytest.mark.guest]

BOOT_TIMEOUT = 120.0  # ~3 s here under TCG; generous for slow CI machines
SHUTOFF_TIMEOUT = 15.0
IGNORE_WINDOW = 3.0
NAME_PREFIX = "qat-guest-test-"


@dataclasses.dataclass
class Guest:
    dom: Any
    serial: Path

    def state(self) -> tuple[int, int]:
        st, reason = self.dom.state()
        return st, reason

    def log(self) -> str:
        return read_serial(self.serial)


def _remove_domain(dom: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefine()


def _sweep_stale_domains(conn: Any) -> None:
    """Remove test domains left behind by test processes that no longer exist (or by this one)."""
    for dom in conn.listAllDomains():
        m = re.fullmatch(rf"{NAME_PREFIX}(\d+)-\w+", dom.name())
        if m is None:
            continue
        if int(m.group(1)) == os.getpid():
            _remove_domain(dom)
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            _remove_domain(dom)
        except PermissionError:
            pass


@pytest.fixture(scope="module")
def images() -> dict[str, GuestImage]:
    return {v: ensure_guest_image(v) for v in VARIANTS}


@pytest.fixture(scope="module")
def serial_dir() -> Iterator[Path]:
    # Readable by libvirt (and by libvirt-qemu, should QEMU open the file itself).
    d = Path(tempfile.mkdtemp(prefix="qat-guest-serial-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def guests(libvirt_conn: Any, images: dict[str, GuestImage], serial_dir: Path) -> Iterator[dict[str, Guest]]:
    _sweep_stale_domains(libvirt_conn)
    started: dict[str, Guest] = {}
    try:
        for variant, image in images.items():
            name = f"{NAME_PREFIX}{os.getpid()}-{variant}"
            serial = serial_dir / f"{variant}.serial.log"
            dom = libvirt_conn.defineXML(domain_xml(image, name, serial, domain_type="qemu"))
            started[variant] = Guest(dom, serial)  # registered before start: cleaned up whatever happens
            dom.createWithFlags(0)
        yield started
    finally:
        for guest in started.values():
            _remove_domain(guest.dom)


def _wait_state(guest: Guest, wanted: int, timeout: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        st = guest.state()
        if st[0] == wanted or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def test_acpi_guest_powers_off_on_power_button(guests: dict[str, Guest]) -> None:
    g = guests["acpi"]
    wait_for_serial(g.serial, BOOT_MARKER, BOOT_TIMEOUT, still_running=g.dom.isActive)
    assert g.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    t0 = time.monotonic()
    g.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    st, reason = _wait_state(g, libvirt.VIR_DOMAIN_SHUTOFF, SHUTOFF_TIMEOUT)
    elapsed = time.monotonic() - t0

    assert st == libvirt.VIR_DOMAIN_SHUTOFF, (
        f"still in state {st} {SHUTOFF_TIMEOUT:.0f}s after the power button; serial:\n{g.log()}"
    )
    # The guest powered itself off (not a crash, not a destroy).
    assert reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, f"shutoff reason {reason}"
    wait_for_serial(g.serial, SHUTDOWN_MARKER, 5.0)
    print(f"acpi guest: power button -> SHUTOFF in {elapsed:.2f}s")


def test_noacpi_guest_ignores_power_button(guests: dict[str, Guest]) -> None:
    g = guests["noacpi"]
    wait_for_serial(g.serial, BOOT_MARKER, BOOT_TIMEOUT, still_running=g.dom.isActive)

    g.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    time.sleep(IGNORE_WINDOW)
    assert g.state()[0] == libvirt.VIR_DOMAIN_RUNNING, f"guest did not ignore ACPI; serial:\n{g.log()}"
    assert SHUTDOWN_MARKER not in g.log()

    g.dom.destroy()
    st, reason = g.state()
    assert (st, reason) == (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED)


def test_guest_image_is_cached_and_readable_by_qemu(images: dict[str, GuestImage]) -> None:
    for variant, image in images.items():
        t0 = time.monotonic()
        again = ensure_guest_image(variant)
        assert time.monotonic() - t0 < 0.5, "a cached guest image should come back at once"
        assert again == image
        assert image.kernel_release.endswith("-cloud-amd64")
        for path in (image.kernel, image.initrd):
            assert stat.S_IMODE(path.stat().st_mode) & 0o444 == 0o444, f"{path} is not world-readable"
            for parent in path.parents:
                assert parent.stat().st_mode & 0o001, f"{parent} is not world-traversable"
        # The first newc entry is the initramfs root: it must be a 0755 directory.
        with gzip.open(image.initrd, "rb") as f:
            header = f.read(110 + 2)
        assert header[:6] == b"070701"
        assert header[110:111] == b"."
        assert int(header[14:22], 16) == stat.S_IFDIR | 0o755
    assert images["acpi"].initrd != images["noacpi"].initrd
