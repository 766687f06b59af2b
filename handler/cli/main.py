"""``qat-handler``: the command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from handler import __version__
from handler.cli import (
    agent_cmd,
    console_cmd,
    controller_cmd,
    crd_cmd,
    demo_cmd,
    doctor_cmd,
    launcher_cmd,
    render_cmd,
    status_cmd,
    webhook_cmd,
)

DESCRIPTION = """\
qat-handler gives Intel QuickAssist (QAT) virtual functions to virtual machines.
It reads KubeVirt-style VirtualMachineInstance manifests that ask for QAT devices,
checks each VF is safe to pass through, and runs the VMs as libvirt domains with
vfio <hostdev> entries, keeping them in step with the manifests.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qat-handler", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"qat-handler {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        agent_cmd,
        launcher_cmd,
        controller_cmd,
        webhook_cmd,
        render_cmd,
        status_cmd,
        console_cmd,
        doctor_cmd,
        demo_cmd,
        crd_cmd,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
