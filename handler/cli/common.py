"""Pieces several subcommands share: common flags, one-line errors, settings assembly."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handler.core.permitted_devices import PermitMode, PermittedDevices
from handler.core.render_settings import RenderSettings
from handler.host.domain_templates import load_templates
from handler.host.permitted_file import load_permitted_devices
from handler.settings import AgentSettings

DOMAIN_TYPES = ("kvm", "qemu", "test")
DEFAULTS = AgentSettings()
"""Flag defaults. Read them from an instance: on a slots dataclass ``AgentSettings.x`` is a slot descriptor."""


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the hand-written examples as they are and shows defaults."""


def fail(message: str, code: int = 2) -> int:
    """Print one line to stderr and return the exit code: errors never show a traceback."""
    print(f"qat-handler: {message}", file=sys.stderr)
    return code


def add_host_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULTS.state_dir,
        help="status file, allocation records and serial console logs",
    )
    parser.add_argument(
        "--host-root",
        type=Path,
        default=Path("/"),
        help="where the host's /sys and /dev are (a simulated tree in tests)",
    )
    parser.add_argument(
        "--domain-type",
        choices=DOMAIN_TYPES,
        default="kvm",
        help="libvirt domain type: kvm on QAT hosts, qemu (TCG) where KVM cannot run the guest",
    )
    parser.add_argument(
        "--managed-hostdevs", action="store_true", help="let libvirt bind vfio-pci itself (managed='yes')"
    )
    parser.add_argument(
        "--cpu-mode", default=None, help="libvirt <cpu mode>, e.g. host-passthrough to give guests AES-NI under KVM"
    )
    parser.add_argument(
        "--default-network",
        default="default",
        metavar="NAME",
        help="bare metal: the libvirt network a VMI's pod network means (libvirt's NAT network is 'default')",
    )
    add_permitted_flags(parser)


def add_permitted_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--permitted-devices",
        type=Path,
        default=None,
        metavar="FILE",
        help="KubeVirt-style permittedHostDevices (pciVendorSelector, resourceName) as YAML",
    )
    parser.add_argument(
        "--permitted-mode",
        choices=("extend", "replace"),
        default="extend",
        help="whether FILE extends or replaces the built-in table of QAT VF IDs",
    )


def permitted_devices(args: argparse.Namespace) -> PermittedDevices:
    """The permitted list from the flags; raises Refused with a one-line reason."""
    return load_permitted_devices(args.permitted_devices, PermitMode(args.permitted_mode))


def render_settings(args: argparse.Namespace, owner: str = "") -> RenderSettings:
    return RenderSettings(
        domain_type=args.domain_type,
        log_dir=str(Path(args.state_dir) / "logs"),
        files_dir=str(Path(args.state_dir) / "guests"),
        managed_hostdevs=args.managed_hostdevs,
        cpu_mode=args.cpu_mode,
        default_network=getattr(args, "default_network", "default"),
        owner=owner,
        templates=load_templates(),
    )


def agent_owner(state_dir: Path, node_name: str | None) -> str:
    """Who owns the domains an agent defines: its node in Kubernetes, else its state directory.
    Two agents on one libvirt (a second install, a test run) then never touch each other's guests."""
    return f"node/{node_name}" if node_name else f"state-dir/{state_dir.resolve()}"
