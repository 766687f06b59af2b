"""What the nested test does on L1, as an operator would on a real host: libvirtd, vfio, the agent.

Every method is a short shell script run through the L1 command channel. Times that the
test reports are read from L1's own clock (``date``, the agent's log timestamps), so the
channel's latency does not enter them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shlex
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.support.nested.l1 import EDU_BDF, L1Guest
from tests.support.polling import wait_until

T = TypeVar("T")

NAMESPACE = "nested"
RESOURCE = "qemu.test/edu"
"""The resource name the permitted-devices file gives QEMU's edu device."""
ENV_VAR = "PCI_RESOURCE_QEMU_TEST_EDU"
STATE = Path("/var/lib/nested/state")
VMIS = Path("/var/lib/nested/vmis")
PERMITTED = Path("/var/lib/nested/permitted.yaml")
L2_MEMORY = "128Mi"  # vfio pins all of it in L1; less also boots faster under TCG
L2_KERNEL_ARGS = "console=ttyS0 panic=-1 quiet"
L2_MARKER = "NEST-L2-MARKER"
GRACE_SECONDS = 120

PERMITTED_YAML = f"""\
# KubeVirt's permittedHostDevices shape: QEMU's edu device, served as {RESOURCE}
pciHostDevices:
  - pciVendorSelector: "1234:11e8"
    resourceName: {RESOURCE}
    externalResourceProvider: true
"""


def domain_name(vmi: str) -> str:
    return f"{NAMESPACE}_{vmi}"


def key_of(vmi: str) -> str:
    return f"{NAMESPACE}/{vmi}"


@dataclasses.dataclass
class NestedNode:
    l1: L1Guest
    venv: Path
    l2_kernel: Path
    l2_initrd: Path

    @property
    def agent_log(self) -> Path:
        return self.l1.work / "agent.jsonl"

    @property
    def qat_handler(self) -> str:
        return str(self.venv / "bin" / "qat-handler")

    # -- the host ------------------------------------------------------------------------
    def start_libvirtd(self, timeout: float) -> float:
        """Start libvirtd as a unit file would (memlock unlimited: vfio pins guest RAM); seconds
        until ``virsh version`` answers, on L1's clock."""
        out = self.l1.check(
            """t0=$(date +%s.%N)
ulimit -l unlimited; ulimit -n 65536
libvirtd -d
until virsh -c qemu:///system version >/dev/null 2>&1; do sleep 0.2; done
echo "$t0 $(date +%s.%N)"
""",
            timeout,
        )
        start, ready = (float(x) for x in out.split()[-2:])
        return ready - start

    def bind_vfio(self, bdf: str = EDU_BDF) -> str:
        """Bind the device to vfio-pci the documented way; return its IOMMU group number."""
        device = f"/sys/bus/pci/devices/{bdf}"
        return self.l1.check(
            f"""echo vfio-pci > {device}/driver_override
echo {bdf} > /sys/bus/pci/drivers_probe
test "$(basename "$(readlink {device}/driver)")" = vfio-pci
basename "$(readlink {device}/iommu_group)"
"""
        ).strip()

    def unbind(self, bdf: str = EDU_BDF) -> None:
        """Take the device off vfio-pci and leave it without a driver."""
        self.l1.check(
            f"echo {bdf} > /sys/bus/pci/drivers/vfio-pci/unbind\n! test -e /sys/bus/pci/devices/{bdf}/driver\n"
        )

    def driver(self, bdf: str = EDU_BDF) -> str:
        out = self.l1.check(f'basename "$(readlink /sys/bus/pci/devices/{bdf}/driver)" 2>/dev/null || true\n')
        return out.strip() or "none"

    def vfio_node(self, group: str) -> bool:
        return self.l1.run(f"test -c /dev/vfio/{group}\n").rc == 0

    def cli(self, args: str, timeout: float = 300.0) -> tuple[int, str]:
        """``qat-handler ARGS`` in L1, stdout only (stderr goes to the L1 command's log)."""
        result = self.l1.run(f"{self.qat_handler} {args} 2>/dev/null\n", timeout)
        return result.rc, result.out

    def write_permitted(self) -> Path:
        self.l1.check(f"mkdir -p {VMIS} {STATE}\ncat > {PERMITTED} <<'EOF'\n{PERMITTED_YAML}EOF\n")
        return PERMITTED

    # -- the agent -----------------------------------------------------------------------
    def start_agent(self) -> None:
        argv = [
            self.qat_handler, "agent", "--vmi-dir", str(VMIS), "--state-dir", str(STATE),
            "--connect", "qemu:///system", "--domain-type", "qemu", "--permitted-devices", str(PERMITTED),
            "--log-format", "json", "--log-level", "debug",
        ]  # fmt: skip
        err = self.l1.work / "agent.stderr"
        self.l1.check(
            f"cd /; PYTHONUNBUFFERED=1 setsid {shlex.join(argv)} > {self.agent_log} 2> {err} < /dev/null &\n"
            "echo $! > /run/nested-agent.pid\n"
        )

    def stop_agent(self, timeout: float) -> None:
        self.l1.run(
            "pid=$(cat /run/nested-agent.pid); kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.5; done\n",
            timeout,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        try:
            text = self.agent_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        for raw in text.splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def log_time(self, event: str, vmi: str, after: float = 0.0) -> float | None:
        """L1 time of the first agent log line ``event`` for ``vmi`` at or after ``after``."""
        for line in self.log_lines():
            if line.get("event") == event and line.get("vmi") == key_of(vmi):
                stamp = dt.datetime.fromisoformat(line["timestamp"]).timestamp()
                if stamp >= after:
                    return stamp
        return None

    # -- VMIs ----------------------------------------------------------------------------
    def put_vmi(self, name: str, env_bdf: str | None) -> float:
        """Write the manifest (and an env file naming ``env_bdf``, if given); return L1's time."""
        manifest = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
            "spec": {
                "terminationGracePeriodSeconds": GRACE_SECONDS,
                "domain": {
                    "cpu": {"cores": 1},
                    "memory": {"guest": L2_MEMORY},
                    "devices": {"hostDevices": [{"name": "edu", "deviceName": RESOURCE}]},
                    "firmware": {
                        "kernelBoot": {
                            "kernelArgs": L2_KERNEL_ARGS,
                            "container": {"kernelPath": str(self.l2_kernel), "initrdPath": str(self.l2_initrd)},
                        }
                    },
                },
            },
        }
        script = ""
        if env_bdf is not None:
            script += _atomic_write(VMIS / f"{name}.env", f"{ENV_VAR}={env_bdf}\n")
        script += _atomic_write(VMIS / f"{name}.json", json.dumps(manifest, indent=1) + "\n")
        return float(self.l1.check(script + "date +%s.%N\n").split()[-1])

    def remove_vmi(self, name: str) -> float:
        out = self.l1.check(f"rm -f {VMIS}/{name}.json {VMIS}/{name}.env\ndate +%s.%N\n")
        return float(out.split()[-1])

    def status(self) -> dict[str, Any]:
        """The agent's status file (``vmis`` by key), as it is now."""
        out = self.l1.run(f"cat {STATE}/status.json 2>/dev/null\n").out
        try:
            return dict(json.loads(out).get("vmis") or {})
        except ValueError:
            return {}

    def allocations(self) -> dict[str, Any]:
        out = self.l1.run(f"cat {STATE}/allocations.json 2>/dev/null\n").out
        try:
            return dict(json.loads(out).get("allocations") or {})
        except ValueError:
            return {}

    def domains(self) -> dict[str, str]:
        """libvirt's domains in L1: name -> state."""
        out = self.l1.check('for d in $(virsh -q list --all --name); do echo "$d $(virsh domstate $d)"; done\n')
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def dumpxml(self, vmi: str) -> str:
        return self.l1.check(f"virsh dumpxml {domain_name(vmi)}\n")

    def serial(self, vmi: str) -> tuple[float, str]:
        """(L1 time, the L2 lines of the VMI's serial log so far)."""
        log = STATE / "logs" / f"{domain_name(vmi)}.serial.log"
        out = self.l1.run(f"date +%s.%N\ngrep -a NEST-L2 {log} 2>/dev/null\n").out
        first, _, rest = out.partition("\n")
        return float(first), rest

    def save_logs(self) -> None:
        """Copy L1's libvirt and serial logs into the work directory, for a failed run."""
        self.l1.run(
            f"mkdir -p {self.l1.work}/l1-logs; cp -r /var/log/libvirt {STATE}/logs {STATE}/*.json"
            f" {self.l1.work}/l1-logs/ 2>/dev/null; true\n",
            60,
        )


def wait_for(what: str | Callable[[], str], check: Callable[[], T | None], timeout: float, poll: float = 1.0) -> T:
    """``wait_until``, polling once a second by default: each check is a command over L1's channel."""
    return wait_until(what, check, timeout, poll=poll)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), None)


def _atomic_write(path: Path, text: str) -> str:
    """Shell lines writing ``text`` to ``path`` through a hidden temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    return f"cat > {tmp} <<'EOF'\n{text}EOF\nmv {tmp} {path}\n"
