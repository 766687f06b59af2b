"""The in-process qcow2 overlay: qemu-img itself checks it, reads through it and writes to it."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from handler.host.qcow2_overlay import overlay_bytes, virtual_size, write_overlay
from tests.support.oci_images import have_tools

pytestmark = pytest.mark.skipif(not have_tools("qemu-img", "qemu-io"), reason="needs qemu-img and qemu-io")


def qemu(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize(("fmt", "size"), [("qcow2", 10 << 30), ("raw", 3 << 20), ("qcow2", 5 << 40)])
def test_qemu_accepts_the_overlay_and_reads_the_base_through_it(tmp_path: Path, fmt: str, size: int) -> None:
    base = tmp_path / f"base.{fmt}"
    qemu("qemu-img", "create", "-q", "-f", fmt, str(base), str(size))
    qemu("qemu-io", "-f", fmt, "-c", "write -P 0x5a 0 64k", str(base))
    overlay = tmp_path / "overlay.qcow2"
    write_overlay(base, fmt, overlay)
    assert "No errors were found" in qemu("qemu-img", "check", str(overlay))
    info = json.loads(qemu("qemu-img", "info", "--output=json", str(overlay)))
    assert (info["format"], info["virtual-size"]) == ("qcow2", size)
    assert (info["backing-filename"], info["backing-filename-format"]) == (str(base), fmt)
    assert stat.S_IMODE(overlay.stat().st_mode) == 0o600
    before = base.read_bytes() if fmt == "raw" else None
    qemu("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 64k", "-c", "write -P 0x42 64k 64k", str(overlay))
    qemu("qemu-io", "-f", "qcow2", "-c", "read -P 0x42 64k 64k", "-c", "read -P 0x5a 0 64k", str(overlay))
    qemu("qemu-io", "-f", fmt, "-c", "read -P 0 64k 64k", str(base))  # the guest's write stayed in the overlay
    if before is not None:
        assert base.read_bytes() == before
    assert "No errors were found" in qemu("qemu-img", "check", str(overlay))


def test_the_size_comes_from_the_base(tmp_path: Path) -> None:
    raw = tmp_path / "r.img"
    raw.write_bytes(b"\0" * 4096)
    assert virtual_size(raw, "raw") == 4096
    with pytest.raises(ValueError):
        virtual_size(raw, "qcow2")


def test_a_path_too_long_for_the_header_is_refused() -> None:
    with pytest.raises(ValueError):
        overlay_bytes("/" + "a" * 2000, "raw", 1 << 20)
