"""``qat-handler agent``: run the node agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading
from collections import Counter
from pathlib import Path
from types import FrameType

import structlog

from handler.agent.agent import StopPolicy
from handler.baremetal.node import BareMetalNode
from handler.cli.common import Formatter, add_host_flags, fail, render_settings
from handler.host.fresh_checks import FreshDeviceChecks
from handler.ops.heartbeat import Heartbeat
from handler.ops.logs import configure_logging
from handler.ops.sdnotify import Notifier
from handler.settings import AgentSettings
from handler.virt.errors import VirtError

EXAMPLES = """\
examples:
  # bare metal, real libvirtd, manifests in /etc/qat-handler/vmis
  qat-handler agent --vmi-dir /etc/qat-handler/vmis --connect qemu:///system

  # try it without a QAT card or libvirtd: libvirt's in-process test driver
  qat-handler agent --vmi-dir examples/vmis --connect test:///default --host-root /tmp/fake-host

signals:
  SIGTERM, SIGINT  stop; with --on-stop shutdown every guest is shut down first
  SIGHUP           re-read the manifest directory without touching running guests
"""
log = structlog.get_logger("qat_handler.cli")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "agent",
        help="run the node agent",
        description="Run the node agent: keep one libvirt domain per VMI manifest in --vmi-dir, with the "
        "VMI's QAT VFs passed through with vfio, and report status in --state-dir.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--vmi-dir", type=Path, default=AgentSettings.vmi_dir, help="directory of VMI manifests")
    parser.add_argument("--connect", default=AgentSettings.connect, help="libvirt URI")
    add_host_flags(parser)
    parser.add_argument("--on-stop", choices=[p.value for p in StopPolicy], default=StopPolicy.SHUTDOWN.value,
                        help="what happens to guests when the agent stops")
    parser.add_argument("--workers", type=int, default=AgentSettings.workers, help="reconcile threads")
    parser.add_argument("--resync-seconds", type=float, default=AgentSettings.resync_seconds,
                        help="look at every VMI at least this often")
    parser.add_argument("--acpi-resend-seconds", type=float, default=AgentSettings.acpi_resend_seconds,
                        help="press the ACPI power button again this often during a shutdown")
    parser.add_argument("--log-format", choices=("auto", "console", "json", "journal"), default="auto")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.set_defaults(run=run)


def settings_from(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings(
        connect=args.connect,
        vmi_dir=args.vmi_dir,
        state_dir=args.state_dir,
        host_root=args.host_root,
        render=render_settings(args),
        on_stop=args.on_stop,
        workers=max(1, args.workers),
        resync_seconds=args.resync_seconds,
        acpi_resend_seconds=args.acpi_resend_seconds,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings.log_format, settings.log_level)
    if not settings.vmi_dir.is_dir():
        return fail(f"--vmi-dir {settings.vmi_dir} is not a directory; fix: create it or point --vmi-dir elsewhere")
    node = BareMetalNode(settings, FreshDeviceChecks(settings.host_root))
    try:
        node.start()
    except VirtError as error:
        return fail(str(error))
    except OSError as error:
        return fail(f"{error.filename}: {error.strerror}; fix: check the path and its permissions")
    return serve(node, StopPolicy(settings.on_stop))


def serve(node: BareMetalNode, policy: StopPolicy) -> int:
    """Run until a stop signal, keeping systemd informed; then apply the stop policy."""
    stop = threading.Event()
    notifier = Notifier()
    heartbeat = Heartbeat(notifier)

    def on_stop_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop signal received", signal=signal.Signals(signum).name)
        stop.set()

    def on_reload_signal(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=_reload, args=(node, notifier), daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGHUP, on_reload_signal)
    while not stop.is_set() and not node.wait_synced(0.5):
        _tick(node, heartbeat, notifier)
    if not stop.is_set():
        notifier.ready()
        log.info("first sync done", vmis=len(list(node.source.keys())))
    node.run(stop, on_tick=lambda: _tick(node, heartbeat, notifier))
    notifier.stopping()
    node.shutdown(policy)
    log.info("agent stopped", policy=str(policy))
    return 0


def _tick(node: BareMetalNode, heartbeat: Heartbeat, notifier: Notifier) -> None:
    stalled = node.engine.pulse.stalled(within=heartbeat.period or 30.0)
    if stalled:
        log.error("reconcile workers stalled; withholding the watchdog ping", workers=stalled)
        return
    heartbeat.beat()
    notifier.status(status_line(node))


def status_line(node: BareMetalNode) -> str:
    snapshot = node.store.snapshot()
    phases = Counter(data.get("phase", "Unknown") for data in snapshot.values())
    failing = sum(
        1 for data in snapshot.values()
        if any(c.get("status") == "False" and c.get("type") == "Synchronized" for c in data.get("conditions", []))
    )
    return f"{len(snapshot)} VMIs, {phases.get('Running', 0)} running, {failing} failing"


def _reload(node: BareMetalNode, notifier: Notifier) -> None:
    notifier.reloading()
    log.info("reloading: re-reading the manifest directory")
    node.source.scan()
    node.engine.resync()
    notifier.ready()
