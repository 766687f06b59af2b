"""``qat-handler``: the command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from handler import __version__

COMMANDS = {
    "agent": "agent_cmd",
    "launcher": "launcher_cmd",
    "controller": "controller_cmd",
    "webhook": "webhook_cmd",
    "render": "render_cmd",
    "status": "status_cmd",
    "console": "console_cmd",
    "doctor": "doctor_cmd",
    "demo": "demo_cmd",
    "crd": "crd_cmd",
}
"""Each subcommand and its module in handler/cli/, in the order --help lists them."""

DESCRIPTION = """\
qat-handler gives Intel QuickAssist (QAT) virtual functions to virtual machines.
It reads KubeVirt-style VirtualMachineInstance manifests that ask for QAT devices,
checks each VF is safe to pass through, and runs the VMs as libvirt domains with
vfio <hostdev> entries, keeping them in step with the manifests.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with ``only`` just that subcommand: its module alone is imported, so the
    launcher in every pod starts without the agent's engine, libvirt or the Kubernetes client."""
    parser = argparse.ArgumentParser(
        prog="qat-handler", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"qat-handler {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"handler.cli.{module}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The only options before the subcommand are --help and --version, so the first word is it.
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
