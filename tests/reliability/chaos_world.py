"""The world of the crash-safety test: a private libvirtd, a simulated QAT host, a manifest
directory that a seeded random user churns, and the agent as a child process to kill.

Guests are tiny device-less TCG domains (16 MiB, no OS: SeaBIOS finds nothing to boot and
idles). A guest "stops from inside" the way a guest OS powers off: a write of SLP_EN to the
q35 ACPI PM1a control port (0x604, set up by SeaBIOS), issued through QEMU's monitor; QEMU
takes it as a guest-initiated shutdown and libvirt reports SHUTOFF/SHUTDOWN. VMIs that ask
for QAT VFs get them from the agent's allocator; libvirt defines their domains, but QEMU
cannot start them here (no VFIO), so they exercise the allocation records and the
failed-start path, and must never be called Failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import yaml

from handler.core.bdf import Bdf
from handler.core.domain_identity import read_identity
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from tests.support.private_libvirtd import private_libvirtd

REPO = Path(__file__).resolve().parents[2]
HOST = SimulatedHost(pfs=(SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=16),))
ACPI_POWER_OFF = "o /w 0x604 0x2000"
"""HMP: write SLP_TYP=S5|SLP_EN to the ICH9 PM1a control register, as a guest OS would."""


@dataclass
class Vmi:
    name: str
    cores: int = 1
    qats: int = 0
    stopped_inside: bool = False
    """The guest powered itself off; its VMI must end Succeeded, not Failed or restarted."""
    changed_while_running: bool = False
    """A change waits for the next start (RestartRequired), and a guest that stops with one
    pending is started again with it, so such a guest is never stopped from inside here."""


@dataclass
class ChaosWorld:
    root: Path
    uri: str
    seed: int
    namespace: str = field(init=False)
    vmi_dir: Path = field(init=False)
    state_dir: Path = field(init=False)
    host_root: Path = field(init=False)
    vmis: dict[str, Vmi] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    agent: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.namespace = f"chaos{os.getpid() % 10000}"
        self.vmi_dir, self.state_dir, self.host_root = self.root / "vmis", self.root / "state", self.root / "host"
        self.vmi_dir.mkdir()
        build_simulated_host(self.host_root, HOST)
        self.rng = random.Random(self.seed)
        self.conn = libvirt.open(self.uri)

    # -- the agent ----------------------------------------------------------------------------
    def start_agent(self, metrics_port: int | None = None, resync_seconds: int | None = 5) -> None:
        self.starts += 1
        log = (self.root / f"agent-{self.starts}.log").open("wb")
        command = [sys.executable, "-m", "handler", "agent", "--vmi-dir", str(self.vmi_dir)]
        command += ["--connect", self.uri, "--state-dir", str(self.state_dir), "--host-root", str(self.host_root)]
        command += ["--domain-type", "qemu", "--on-stop", "keep", "--workers", "4", "--acpi-resend-seconds", "0.5"]
        command += ["--log-format", "json"]
        if resync_seconds is not None:  # None: the agent's default
            command += ["--resync-seconds", str(resync_seconds)]
        if metrics_port is not None:
            command += ["--metrics-address", f"127.0.0.1:{metrics_port}"]
        self.agent = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill_agent(self) -> None:
        if self.agent is not None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait()
            self.agent = None

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(60)
            except subprocess.TimeoutExpired:
                self.kill_agent()
        self.agent = None

    # -- the user -----------------------------------------------------------------------------
    def manifest(self, vmi: Vmi) -> dict[str, Any]:
        devices: dict[str, Any] = {}
        if vmi.qats:
            devices["qats"] = [{"name": f"qat{i}", "deviceName": "qat.intel.com/generic"} for i in range(vmi.qats)]
        return {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": vmi.name, "namespace": self.namespace},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "domain": {"cpu": {"cores": vmi.cores}, "memory": {"guest": "16Mi"}, "devices": devices},
            },
        }

    def write(self, vmi: Vmi) -> None:
        path = self.vmi_dir / f"{vmi.name}.yaml"
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(yaml.safe_dump(self.manifest(vmi)))
        os.replace(temp, path)
        self.vmis[vmi.name] = vmi
        self.removed.discard(vmi.name)

    def add(self, index: int) -> None:
        vmi = Vmi(f"vm-{index:03d}", qats=1 if index % 5 == 0 else 0)
        self.write(vmi)
        self.log.append(f"add {vmi.name}")

    def remove(self) -> None:
        name = self.rng.choice(sorted(self.vmis))
        (self.vmi_dir / f"{name}.yaml").unlink()
        del self.vmis[name]
        self.removed.add(name)
        self.log.append(f"remove {name}")

    def change(self) -> None:
        vmi = self.vmis[self.rng.choice(sorted(self.vmis))]
        # A stopped guest whose VMI changes is started again with the change; a running one keeps
        # running with the change pending.
        self.write(Vmi(vmi.name, cores=3 - vmi.cores, qats=vmi.qats, changed_while_running=not vmi.stopped_inside))
        self.log.append(f"change {vmi.name}")

    def stop_inside(self) -> None:
        """Power a running guest off from inside; a no-op when none of ours runs."""
        running = [
            n
            for n, v in sorted(self.vmis.items())
            if not (v.stopped_inside or v.changed_while_running) and self.active(n)
        ]
        if not running:
            return
        name = self.rng.choice(running)
        with contextlib.suppress(libvirt.libvirtError):  # the monitor may close before it answers
            dom = self.conn.lookupByName(self.domain_name(name))
            libvirt_qemu.qemuMonitorCommand(dom, ACPI_POWER_OFF, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
        # Right after boot SeaBIOS may not have enabled the PM ports yet and the write is lost:
        # only a guest that really went off counts (QEMU acts on the write at once).
        if self._runs_a_while(name):
            self.log.append(f"stop-inside {name} (ignored: firmware not ready)")
            return
        self.vmis[name].stopped_inside = True
        self.log.append(f"stop-inside {name}")

    def _runs_a_while(self, name: str, seconds: float = 20.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.active(name):
                return False
            time.sleep(0.1)
        return True

    def churn(self, next_index: int) -> int:
        """One random user action; returns the next free VMI index."""
        action = self.rng.choice(("add", "remove", "change", "stop", "stop"))
        if action == "add" or len(self.vmis) < 10:
            self.add(next_index)
            return next_index + 1
        {"remove": self.remove, "change": self.change, "stop": self.stop_inside}[action]()
        return next_index

    # -- what libvirt and the agent say ---------------------------------------------------------
    def domain_name(self, name: str) -> str:
        return f"{self.namespace}_{name}"

    def active(self, name: str) -> bool:
        try:
            return bool(self.conn.lookupByName(self.domain_name(name)).isActive())
        except libvirt.libvirtError:
            return False

    def our_domains(self) -> dict[str, tuple[libvirt.virDomain, Any]]:
        """Our domains by VMI name, with their identity (every domain on this daemon is ours)."""
        found = {}
        for dom in self.conn.listAllDomains(0):
            with contextlib.suppress(libvirt.libvirtError):
                identity = read_identity(dom.XMLDesc(0))
                if identity is not None and identity.namespace == self.namespace:
                    found[identity.name] = (dom, identity)
        return found

    def read_json(self, name: str) -> Any:
        with contextlib.suppress(FileNotFoundError):
            return json.loads((self.state_dir / name).read_text())
        return None

    def cleanup(self) -> None:
        self.stop_agent()
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()
        self.conn = libvirt.open(self.uri)
        for dom in self.conn.listAllDomains(0):
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        self.conn.close()


@contextlib.contextmanager
def world_on_private_libvirtd(tmp_path: Path, seed: int) -> Iterator[ChaosWorld]:
    """A ChaosWorld on a libvirtd of its own; every domain it made is removed at the end, with
    the daemon started again first if a test left it stopped."""
    with private_libvirtd(tmp_path) as daemon:
        world = ChaosWorld(tmp_path, daemon.uri, seed)
        try:
            yield world
        finally:
            if not daemon.answers():
                daemon.start()
            world.cleanup()
