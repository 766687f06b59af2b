"""``qat-handler agent``: run the node agent until SIGTERM or SIGINT.

This module is the command's parser and settings; what runs is ``agent_serve.py``, imported only
when the agent starts, so every other subcommand (the launcher in each pod, ``--help``) starts
without the engine, libvirt and the metrics library.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from handler.cli.common import DEFAULTS, Formatter, add_host_flags, agent_owner, render_settings
from handler.core.numa import NumaPolicy
from handler.core.stop_policy import StopPolicy
from handler.settings import AgentSettings

EXAMPLES = """\
examples:
  # bare metal, real libvirtd, manifests in /etc/qat-handler/vmis
  qat-handler agent --vmi-dir /etc/qat-handler/vmis --connect qemu:///system

  # try it without a QAT card or libvirtd: libvirt's in-process test driver
  qat-handler agent --vmi-dir examples/vmis --connect test:///default --host-root /tmp/fake-host

  # Kubernetes (the DaemonSet): VMIs labelled kubevirt.io/nodeName=$NODE_NAME
  qat-handler agent --kubernetes --node-name "$NODE_NAME" --connect qemu:///system --on-stop keep

signals:
  SIGTERM, SIGINT  stop; with --on-stop shutdown every guest is shut down first
  SIGHUP           re-read manifests and handoffs without touching running guests
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "agent",
        help="run the node agent",
        description="Run the node agent: keep one libvirt domain per VMI, with the VMI's QAT VFs passed "
        "through with vfio. On bare metal the VMIs are manifests in --vmi-dir and status goes to "
        "--state-dir; with --kubernetes they are this node's VMIs in the cluster.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--vmi-dir", type=Path, default=DEFAULTS.vmi_dir, help="directory of VMI manifests")
    parser.add_argument("--connect", default=DEFAULTS.connect, help="libvirt URI")
    add_host_flags(parser)
    parser.add_argument("--kubernetes", action="store_true", help="take VMIs from the Kubernetes API")
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="this node (default: $NODE_NAME)")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULTS.run_dir,
        help="Kubernetes: where launcher pods' handoff slots are (<run-dir>/pods/<pod-uid>)",
    )
    parser.add_argument(
        "--pod-resources-socket",
        type=Path,
        default=Path("/var/lib/kubelet/pod-resources/kubelet.sock"),
        help="Kubernetes: kubelet's pod-resources socket, to check handoffs against kubelet's allocations",
    )
    parser.add_argument(
        "--kubevirt-namespace",
        default="kubevirt",
        help="Kubernetes: namespace of the kubevirt-config ConfigMap and the KubeVirt CR",
    )
    parser.add_argument(
        "--on-stop",
        choices=[p.value for p in StopPolicy],
        default=None,
        help="what happens to guests when the agent stops (default: shutdown on bare metal, keep with --kubernetes)",
    )
    parser.add_argument(
        "--image-store",
        type=Path,
        default=None,
        metavar="DIR",
        help="bare metal: an OCI layout whose images, named by full reference, serve containerDisks without a fetch",
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="bare metal: fetch containerDisks from this registry over plain HTTP (repeatable)",
    )
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers, help="reconcile threads")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=DEFAULTS.resync_seconds,
        help="look at every VMI at least this often",
    )
    parser.add_argument(
        "--acpi-resend-seconds",
        type=float,
        default=DEFAULTS.acpi_resend_seconds,
        help="press the ACPI power button again this often during a shutdown",
    )
    parser.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz here (off when not given)",
    )
    parser.add_argument(
        "--numa-placement",
        choices=[p.value for p in NumaPolicy],
        default=DEFAULTS.numa_placement.value,
        help="pin guests to the NUMA node of their VFs: preferred (pin when it fits), strict (else refuse), none",
    )
    parser.add_argument("--log-format", choices=("auto", "console", "json", "journal"), default="auto")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.set_defaults(run=run)


def settings_from(args: argparse.Namespace) -> AgentSettings:
    on_stop = args.on_stop or (StopPolicy.KEEP if args.kubernetes else StopPolicy.SHUTDOWN).value
    return AgentSettings(
        connect=args.connect,
        vmi_dir=args.vmi_dir,
        state_dir=args.state_dir,
        run_dir=args.run_dir,
        host_root=args.host_root,
        image_store=args.image_store,
        insecure_registries=tuple(args.insecure_registry),
        render=render_settings(args, agent_owner(args.state_dir, args.node_name if args.kubernetes else None)),
        on_stop=on_stop,
        workers=max(1, args.workers),
        resync_seconds=args.resync_seconds,
        acpi_resend_seconds=args.acpi_resend_seconds,
        log_format=args.log_format,
        log_level=args.log_level,
        metrics_address=args.metrics_address,
        numa_placement=NumaPolicy(args.numa_placement),
    )


def run(args: argparse.Namespace) -> int:
    from handler.cli.agent_serve import run_agent

    return run_agent(args, settings_from(args))
