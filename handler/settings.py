"""Every setting of the agent, in one typed object built by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from handler.core.numa import NumaPolicy, NumaTopology
from handler.core.planner import PlanSettings
from handler.core.render_settings import RenderSettings


@dataclass(frozen=True, slots=True)
class AgentSettings:
    connect: str = "qemu:///system"
    """libvirt URI. ``test:///default`` is libvirt's in-process test hypervisor (no daemon)."""
    vmi_dir: Path = Path("/etc/qat-handler/vmis")
    """Bare metal: the directory of VMI manifests (and their ``.env`` files) to keep running."""
    state_dir: Path = Path("/var/lib/qat-handler")
    """Status file, allocation records and serial console logs."""
    run_dir: Path = Path("/run/qat-handler")
    """Kubernetes: per-pod handoff slots written by launchers."""
    host_root: Path = Path("/")
    """Where the host's /sys and /dev are; tests and the demo point it at a simulated tree."""
    render: RenderSettings = field(default_factory=RenderSettings)
    image_store: Path | None = None
    """Bare metal: an OCI layout whose images, named by their full reference, serve containerDisks
    without fetching (for hosts without a registry)."""
    insecure_registries: tuple[str, ...] = ()
    """Bare metal: registries (``host[:port]``) that containerDisks are fetched from over plain HTTP."""
    acpi_resend_seconds: float = 3.0
    """A shutdown request presses the power button again this often until the guest is off."""
    on_stop: str = "shutdown"
    """``shutdown`` guests when the agent stops (bare-metal default) or ``keep`` them running."""
    workers: int = 4
    resync_seconds: float = 60.0
    metrics_address: str | None = None
    """``HOST:PORT`` for /metrics, /healthz and /readyz; off when None."""
    log_format: str = "auto"
    log_level: str = "info"
    numa_placement: NumaPolicy = NumaPolicy.PREFERRED
    """Pin each guest's vCPUs and memory to the NUMA node of its VFs (``preferred``, ``strict``, ``none``)."""

    def plan_settings(self, topology: NumaTopology | None = None) -> PlanSettings:
        """``topology``: the host's NUMA layout, read by the shell at start."""
        return PlanSettings(
            render=self.render,
            acpi_resend_seconds=self.acpi_resend_seconds,
            numa_policy=self.numa_placement,
            numa_topology=topology,
        )
