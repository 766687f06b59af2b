"""The L1 guest: a QEMU (TCG) VM with an IOMMU and a PCI device, driven over a 9p command channel.

Layout (every path is the same on the host and inside L1)::

    host (pytest)                       L1 (this module boots it)
    qemu-system-x86_64, TCG, q35        Debian generic kernel, intel_iommu=on
      intel-iommu (caching-mode=on)       /kmod/*.ko: virtio, 9p, vfio (insmod in order)
      edu at 00:05.0 (1234:11e8)  --->    0000:00:05.0, its own IOMMU group
      9p /usr (ro)                --->    /usr: the host's libvirtd, QEMU and python3
      9p checkout, .venv (ro)     --->    the same paths: `qat-handler` runs as on the host
      9p work dir (rw)            --->    the command channel, agent log, L2 kernel+initrd
      serial console              --->    <work>/l1-console.log

:meth:`L1Guest.run` writes a shell script into ``<work>/channel`` and waits for its exit
status (see ``l1-channel.sh``); nothing depends on parsing a console.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.nested.initramfs import Share, write_l1_initrd
from tests.support.nested.packages import NestedParts

QEMU = "qemu-system-x86_64"
EDU_BDF = "0000:00:05.0"
EDU_IDS = "1234:11e8"
MEMORY_MIB = 2048
CPUS = 2
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet intel_iommu=on"
POLL = 0.1


class L1Error(RuntimeError):
    """L1 did not come up, died, or a command did not finish in time."""


@dataclasses.dataclass(frozen=True)
class Result:
    rc: int
    out: str


def missing_capabilities() -> str | None:
    """What this host's QEMU lacks for the nested test (one line), or None."""
    try:
        proc = subprocess.run([QEMU, "-device", "help"], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return f"{QEMU} is not installed"
    listed = proc.stdout + proc.stderr
    lacking = [dev for dev in ("edu", "intel-iommu", "virtio-9p-pci") if f'name "{dev}"' not in listed]
    if lacking:
        return f"{QEMU} has no {', '.join(lacking)} device"
    return None


def shares_for(checkout: Path, venv: Path, python_home: Path, work: Path) -> tuple[Share, ...]:
    """/usr, the checkout, the virtualenv and the interpreter it was made from (when they live
    elsewhere, e.g. under pyenv), and the work directory."""
    shares = [Share("hostusr", Path("/usr")), Share("checkout", checkout)]
    covered = [Path("/usr"), checkout]
    for tag, tree in (("venv", venv), ("python", python_home)):
        if not any(tree.is_relative_to(done) for done in covered):
            shares.append(Share(tag, tree))
            covered.append(tree)
    shares.append(Share("work", work, writable=True))
    return tuple(shares)


class L1Guest:
    def __init__(self, parts: NestedParts, work: Path, shares: tuple[Share, ...]) -> None:
        self.work = work
        self.channel = work / "channel"
        self.console = work / "l1-console.log"
        self.channel.mkdir(mode=0o755, exist_ok=True)
        initrd = write_l1_initrd(parts, work / "l1-initrd.cpio.gz", shares, self.channel)
        argv = [
            QEMU, "-machine", "q35,accel=tcg,kernel-irqchip=split", "-cpu", "qemu64",
            "-m", str(MEMORY_MIB), "-smp", str(CPUS),
            "-device", "intel-iommu,intremap=on,caching-mode=on",
            "-device", "edu,addr=0x5",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-kernel", str(parts.l1_kernel), "-initrd", str(initrd), "-append", KERNEL_ARGS,
        ]  # fmt: skip
        for slot, share in enumerate(shares, start=7):
            ro = "" if share.writable else ",readonly=on"
            argv += ["-fsdev", f"local,id=fs{slot},path={share.path},security_model=none{ro}"]
            argv += ["-device", f"virtio-9p-pci,fsdev=fs{slot},mount_tag={share.tag},addr={slot:#x}"]
        self._ids = itertools.count(1)
        self.started_at = time.monotonic()
        with open(work / "l1-qemu.stderr", "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, preexec_fn=_die_with_parent
            )

    # -- lifecycle -----------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> float:
        """Wait for the command channel; return the seconds since QEMU was started."""
        self._wait(lambda: (self.channel / "ready").exists(), timeout, "L1 to boot and open its command channel")
        return time.monotonic() - self.started_at

    def power_off(self, timeout: float = 60.0) -> None:
        """Ask L1 to power off; kill QEMU if it does not."""
        if self.proc.poll() is None:
            (self.channel / "poweroff").touch()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    # -- commands ------------------------------------------------------------------------
    def run(self, script: str, timeout: float = 300.0) -> Result:
        """Run ``script`` with sh inside L1 (as root); L1 kills it after ``timeout`` seconds."""
        stem = self.channel / f"{next(self._ids):04d}"
        Path(f"{stem}.timeout").write_text(f"{int(timeout)}\n")
        tmp = Path(f"{stem}.cmd.tmp")
        tmp.write_text(script)
        tmp.rename(f"{stem}.cmd")
        rc_file = Path(f"{stem}.rc")
        # L1 ends the command at `timeout`; the margin covers the channel's own latency.
        self._wait(rc_file.exists, timeout + 120, f"command {stem.name} to finish:\n{script}")
        out = Path(f"{stem}.out").read_text(errors="replace")
        return Result(int(rc_file.read_text().strip() or "255"), out)

    def check(self, script: str, timeout: float = 300.0) -> str:
        """Like :meth:`run`, but a non-zero exit status is an error; returns the output."""
        result = self.run(script, timeout)
        if result.rc != 0:
            raise L1Error(f"L1 command failed (exit {result.rc}):\n{script}\n--- output:\n{result.out}")
        return result.out

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except FileNotFoundError:
            return "<no console output>"
        return "\n".join(text.splitlines()[-lines:])

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.proc.poll() is not None:
                raise L1Error(
                    f"L1 (QEMU) exited with {self.proc.returncode} while waiting for {what}\n"
                    f"--- L1 console:\n{self.console_tail()}"
                )
            if time.monotonic() > deadline:
                raise L1Error(
                    f"timed out after {timeout:.0f}s waiting for {what}\n--- L1 console:\n{self.console_tail()}"
                )
            time.sleep(POLL)


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so no L1 outlives its test."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
