"""Host-level choices that shape every domain the agent renders."""

from __future__ import annotations

from dataclasses import dataclass

from handler.core.templates import NO_TEMPLATES, DomainTemplates


@dataclass(frozen=True, slots=True)
class RenderSettings:
    domain_type: str = "kvm"
    """``kvm`` on real QAT hosts; ``qemu`` (TCG) where KVM cannot run the guest; ``test`` is accepted too."""
    log_dir: str = "/var/lib/qat-handler/logs"
    """Directory for the per-VMI serial console logs."""
    managed_hostdevs: bool = False
    """Let libvirt bind/unbind vfio-pci itself (managed='yes'); off because the agent checks the binding."""
    cpu_mode: str | None = None
    """``host-passthrough`` gives the guest AES-NI and friends under KVM; None leaves libvirt's default."""
    machine: str = "q35"
    default_network: str = "default"
    """The libvirt network a ``pod: {}`` network means on bare metal (libvirt's NAT network).
    Not part of the fingerprint: it applies when a guest is next defined."""
    files_dir: str = "/var/lib/qat-handler/guests"
    """Where the agent keeps each VMI's prepared files (cloud-init ISOs, overlays, empty disks),
    one directory per VMI uid. Not part of the fingerprint: it follows the state directory, like owner."""
    owner: str = ""
    """Written into each domain's metadata: which agent instance manages it (bare metal: its state
    directory; Kubernetes: its node). Not part of the fingerprint: it never changes a guest."""
    templates: DomainTemplates = NO_TEMPLATES
    """The domain XML skeletons, read from ``templates/`` by the shell (handler/host/domain_templates.py).
    Needed to render; settings that only plan stops or compare digests can leave them out."""

    def fingerprint(self) -> str:
        return f"{self.domain_type}|{self.managed_hostdevs}|{self.cpu_mode}|{self.machine}|{self.log_dir}"
