"""``qat-handler doctor``: the host preflight, in the spirit of virt-host-validate."""

from __future__ import annotations

import argparse
from pathlib import Path

from handler.cli.common import Formatter, add_permitted_flags, fail, permitted_devices
from handler.core.refusal import Refused
from handler.host.doctor import run_doctor
from handler.virt.errors import VirtError
from handler.virt.hypervisor import LibvirtHypervisor

EXAMPLES = """\
examples:
  qat-handler doctor                          # this host, qemu:///system
  qat-handler doctor -o json | jq '.checks[] | select(.ok | not)'
  qat-handler doctor --host-root /tmp/fake-host --connect test:///default
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check that this host can pass QAT VFs to VMs (run it first on a new host)",
        description="Check the IOMMU, vfio-pci, every QAT PF and VF, the vfio-pci denylist, the memory-lock "
        "limit, libvirt and KVM. Each line is ✔ or ✘ (⚠ for advice) with a fix. Exits 1 when a required "
        "check fails.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--host-root", type=Path, default=Path("/"), help="where the host's /sys and /dev are")
    parser.add_argument("--connect", default="qemu:///system", help="libvirt URI")
    parser.add_argument(
        "--domain-type", choices=("kvm", "qemu", "test"), default="kvm", help="with qemu (TCG) KVM is not required"
    )
    add_permitted_flags(parser)
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        permitted = permitted_devices(args)
    except Refused as refused:
        return fail(refused.refusal.line())

    def probe() -> tuple[bool, str]:
        hypervisor = LibvirtHypervisor(args.connect)
        try:
            return True, f"libvirt {hypervisor.version()} at {args.connect}"
        except VirtError as error:
            return False, str(error)
        finally:
            hypervisor.connection.close()

    report = run_doctor(args.host_root, probe, permitted, args.domain_type)
    if args.output == "json":
        print(report.to_json(), end="")  # already a JSON document
    else:
        print(report.to_text())
    return report.exit_code
