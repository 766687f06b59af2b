"""``qat-handler console``: attach to a guest's serial console; Ctrl-] detaches."""

from __future__ import annotations

import argparse
import sys

import libvirt

from handler.cli.common import DEFAULTS, Formatter, fail
from handler.virt.console import ConsoleSession, raw_terminal
from handler.virt.errors import wrap

EXAMPLES = """\
examples:
  qat-handler console default/vmi-qat
  qat-handler console edge/ipsec-gw --connect qemu:///system
  (type Ctrl-] to detach; the whole history stays in <state-dir>/logs/<namespace>_<name>.serial.log)
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "console",
        help="attach to a guest's serial console (Ctrl-] detaches)",
        description="Attach this terminal to the serial console of the guest of VMI NAMESPACE/NAME, "
        "through a libvirt console stream, like `virsh console`. Ctrl-] detaches and leaves the guest running.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("vmi", metavar="NAMESPACE/NAME", help="the VMI (a bare NAME means namespace default)")
    parser.add_argument("--connect", default=DEFAULTS.connect, help="libvirt URI")
    parser.add_argument("--force", action="store_true", help="take the console over from another session")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    namespace, _, name = args.vmi.rpartition("/")
    key = f"{namespace or 'default'}/{name}"
    domain = key.replace("/", "_", 1)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are reported once, below
    libvirt.virEventRegisterDefaultImpl()  # before the connection opens, or its stream gets no events
    try:
        conn = libvirt.open(args.connect)
    except libvirt.libvirtError as error:
        message = wrap(error, "connect").message
        return fail(f"console {key}: connect {args.connect}: {message}; fix: start libvirtd, or check --connect", 1)
    try:
        return _attach(conn, key, domain, args.force)
    finally:
        conn.close()


def _attach(conn: libvirt.virConnect, key: str, domain: str, force: bool) -> int:
    try:
        dom = conn.lookupByName(domain)
    except libvirt.libvirtError:
        return fail(
            f"console {key}: no guest for this VMI (domain {domain}); fix: check the name with `qat-handler status`", 1
        )
    if not dom.isActive():
        return fail(
            f"console {key}: the guest is not running (domain {domain} is shut off); fix: start the VMI first", 1
        )
    session = ConsoleSession(conn, dom, sys.stdin.fileno(), sys.stdout.fileno())
    try:
        session.open(force)
    except libvirt.libvirtError as error:
        hint = "detach the other session, or use --force" if "active console" in str(error).lower() else "see the error"
        return fail(f"console {key}: {wrap(error, 'open console').message}; fix: {hint}", 1)
    print(f"Connected to {key} (domain {domain}). Escape character is ^]", file=sys.stderr, flush=True)
    with raw_terminal(sys.stdin.fileno()):
        outcome = session.run()
    if outcome != "detached":
        print(f"\nqat-handler: console {key}: {outcome}", file=sys.stderr)
    return 0
