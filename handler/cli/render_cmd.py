"""``qat-handler render``: print the domain XML the agent would define for a manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from handler.baremetal.manifest_file import default_uid, load_manifest
from handler.cli.common import Formatter, add_host_flags, fail, permitted_devices, render_settings
from handler.core.attachments import Attachment, resolve_on_host
from handler.core.device_env import resolve_devices
from handler.core.domain_xml import render_domain
from handler.core.env_text import parse_env_text
from handler.core.refusal import Refused
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.net_bridges import host_bridges

EXAMPLES = """\
examples:
  qat-handler render examples/vmis/vmi-qat.yaml
  qat-handler render vmi.yaml --env-file vmi.env --domain-type qemu
  qat-handler render vmi.yaml --host-root / | virt-xml-validate - domain
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "render",
        help="print the libvirt domain XML for a VMI manifest",
        description="Print the domain XML the agent would define for VMI_FILE. Devices come from "
        "--env-file (default: <stem>.env beside the manifest). With --host-root, every device is "
        "also checked against the host as the agent would.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("vmi_file", type=Path, metavar="VMI_FILE")
    parser.add_argument("--env-file", type=Path, default=None, help="KEY=VALUE device environment")
    add_host_flags(parser)
    parser.set_defaults(run=run, host_root=None)  # check the host only when asked to


def run(args: argparse.Namespace) -> int:
    try:
        document = load_manifest(args.vmi_file)
        meta = document.get("metadata") if isinstance(document, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        vmi = parse_vmi(document, default_uid=default_uid(meta.get("namespace") or "default", meta.get("name") or ""))
        env_file = args.env_file or args.vmi_file.with_suffix(".env")
        env = parse_env_text(env_file.read_text(), env_file.name) if env_file.exists() else {}
        if args.env_file and not args.env_file.exists():
            return fail(f"{args.env_file}: no such env file")
        devices = resolve_devices(vmi, env)
        settings = render_settings(args)
        attachments = _attachments(vmi, settings.default_network, args.host_root)
        if args.host_root is not None:
            checks = FreshDeviceChecks(args.host_root, permitted_devices(args))
            for device in devices:
                refusal = checks.check(device.bdf, device.resource)
                if refusal is not None:
                    return fail(f"{args.vmi_file.name}: {refusal.line()}")
    except Refused as refused:
        return fail(f"{args.vmi_file.name}: {refused.refusal.line()}")
    except OSError as error:
        return fail(f"{error.filename or args.vmi_file}: {error.strerror}")
    print(render_domain(vmi, devices, settings, attachments), end="")
    return 0


def _attachments(vmi: VMI, default_network: str, host_root: Path | None) -> tuple[Attachment, ...]:
    """Without asking libvirt: a multus name that is a bridge on this host is that bridge, any
    other name a libvirt network (the agent checks that the network exists before defining)."""
    bridges = host_bridges(host_root or Path("/"))
    return resolve_on_host(vmi, default_network, lambda name: None if name in bridges else True, bridges.__contains__)
