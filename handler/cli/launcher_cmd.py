"""``qat-handler launcher``: the entrypoint of a VMI's pod (the virt-launcher role)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from handler.cli.common import Formatter, fail
from handler.core.vmi_parse import DEFAULT_GRACE_SECONDS
from handler.ops.logs import configure_logging

EXAMPLES = """\
examples:
  # in the pod spec (values from the downward API, slot mounted with subPathExpr: $(POD_UID))
  qat-handler launcher --run-dir /var/run/qat-handler/slot

  qat-handler launcher --run-dir /tmp/slot --namespace default --name vmi-qat \\
      --uid 6f1c1c9e-4e55-4a8b-9f7e-6c2b0a7d0001 --pod-uid 0d4b0f3e-2a51-4f0e-9f36-8f1b7a2f9c11
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "launcher",
        help="run as a VMI pod's entrypoint and hand its devices to the node agent",
        description="Copy this pod's device-plugin variables (PCI_RESOURCE_*, QAT0..QATn) into its handoff "
        "slot for the node agent, then stay up. On SIGTERM ask the agent to shut the guest down and "
        "wait until it reports the guest off, for at most the VMI's grace period plus 15 s.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    env = os.environ.get
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(env("QAT_HANDLER_SLOT", "/var/run/qat-handler/slot")),
        help="this pod's handoff slot (a hostPath subPath named after the pod UID)",
    )
    parser.add_argument("--namespace", default=env("VMI_NAMESPACE"), help="VMI namespace ($VMI_NAMESPACE)")
    parser.add_argument("--name", default=env("VMI_NAME"), help="VMI name ($VMI_NAME)")
    parser.add_argument("--uid", default=env("VMI_UID"), help="VMI uid ($VMI_UID)")
    parser.add_argument("--pod-uid", default=env("POD_UID"), help="this pod's uid ($POD_UID)")
    parser.add_argument(
        "--grace-seconds",
        type=int,
        default=int(env("VMI_GRACE_SECONDS", str(DEFAULT_GRACE_SECONDS))),
        help="the VMI's terminationGracePeriodSeconds ($VMI_GRACE_SECONDS)",
    )
    parser.add_argument("--log-format", choices=("auto", "console", "json", "journal"), default="auto")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from handler.kube.launcher import Launcher, LauncherSettings

    configure_logging(args.log_format, "info")
    missing = [
        flag
        for flag, value in (
            ("--namespace", args.namespace),
            ("--name", args.name),
            ("--uid", args.uid),
            ("--pod-uid", args.pod_uid),
        )
        if not value
    ]
    if missing:
        return fail(
            f"{', '.join(missing)} not set; fix: pass them or set VMI_NAMESPACE, VMI_NAME, VMI_UID, "
            "POD_UID through the downward API"
        )
    settings = LauncherSettings(args.run_dir, args.namespace, args.name, args.uid, args.pod_uid, args.grace_seconds)
    try:
        return Launcher(settings, os.environ).run()
    except OSError as error:
        return fail(f"{error.filename}: {error.strerror}; fix: mount the handoff slot at --run-dir")
