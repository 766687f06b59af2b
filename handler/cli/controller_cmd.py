"""``qat-handler controller``: make every VMI's launcher pod and move its phase (virt-controller's role)."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from handler.cli.coexistence import refuse_beside_kubevirt
from handler.cli.common import DEFAULTS, Formatter, fail
from handler.core.webhook_settings import WebhookTlsSettings
from handler.ops.logs import configure_logging
from handler.ops.stop_signals import StopSignals

if TYPE_CHECKING:
    from handler.controller.controller import Controller
    from handler.controller.health import ControllerHealth
    from handler.controller.lease import LeaderElector

EXAMPLES = """\
examples:
  # in the Deployment (two replicas; POD_NAME and POD_NAMESPACE from the downward API)
  qat-handler controller --launcher-image qat-handler:0.1.0

  # from a workstation, against the cluster in $KUBECONFIG
  qat-handler controller --launcher-image qat-handler:0.1.0 --lease-namespace qat-handler --log-format console

  # with /metrics, /healthz and /readyz (the Deployment's probes use port 9472)
  qat-handler controller --launcher-image qat-handler:0.1.0 --metrics-address 127.0.0.1:9472

Only the replica holding the Lease acts; the others wait and take over within 15 s.
The controller refuses to start where KubeVirt itself runs.
"""
log = structlog.get_logger("qat_handler.cli")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "controller",
        help="create each VMI's launcher pod and move its phase (the virt-controller role)",
        description="For every VMI without a pod, create its launcher pod (the QAT resources, the guest's "
        "size, the VMI's scheduling fields); mirror the pod's scheduling onto the VMI; label the VMI with "
        "its node once the pod runs there, for that node's agent; fail the VMI (with a Warning Event) if "
        "its pod fails, ends or disappears before the VMI is final, Running included, so that the agent "
        "stops the guest; delete the pod once the agent has shut the guest down.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--launcher-image", required=True, metavar="IMAGE", help="the launcher pods' image")
    parser.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "qat-handler",
        help="namespace of the leader-election Lease (default: $POD_NAMESPACE, else qat-handler)",
    )
    parser.add_argument("--lease-name", default="qat-handler-controller", help="name of the Lease")
    parser.add_argument(
        "--kubevirt-namespace",
        default="kubevirt",
        help="namespace of kubevirt-config and of KubeVirt itself, if installed (then the controller refuses to run)",
    )
    parser.add_argument(
        "--run-dir",
        type=str,
        default=str(DEFAULTS.run_dir),
        help="the agents' --run-dir on the nodes: launcher pods mount their slot of <run-dir>/pods",
    )
    parser.add_argument("--workers", type=int, default=4, help="VMIs handled at once")
    parser.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz here (off when not given)",
    )
    parser.add_argument("--log-format", choices=("auto", "console", "json", "journal"), default="auto")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from handler.controller.controller import Controller, ControllerSettings
    from handler.controller.health import ControllerHealth
    from handler.controller.lease import LeaderElector, default_identity
    from handler.core.launcher_pod import LauncherPodSettings
    from handler.kube.client import KubeConfigError, api_client
    from handler.ops.controller_metrics import ControllerMetrics
    from handler.ops.health_server import HealthServer, parse_address

    configure_logging(args.log_format, args.log_level)
    if not args.launcher_image.strip():
        return fail("--launcher-image is empty; fix: pass the qat-handler image, e.g. qat-handler:0.1.0")
    if args.metrics_address is not None:
        try:
            parse_address(args.metrics_address)
        except ValueError as error:
            return fail(f"--metrics-address {args.metrics_address}: {error}; fix: use HOST:PORT, e.g. 0.0.0.0:9472")
    try:
        api = api_client()
    except KubeConfigError as error:
        return fail(str(error))
    refused = refuse_beside_kubevirt(api, args.kubevirt_namespace, "qat-handler controller")
    if refused is not None:
        return fail(refused)
    settings = ControllerSettings(LauncherPodSettings(args.launcher_image, args.run_dir), workers=args.workers)
    identity = default_identity()
    metrics = ControllerMetrics()
    controller = Controller(api, settings, metrics=metrics, identity=identity)
    elector = LeaderElector(api, args.lease_namespace, args.lease_name, identity)
    health = ControllerHealth(controller, elector)
    server = None
    if args.metrics_address is not None:
        server = HealthServer(args.metrics_address, metrics, live=health.alive, ready=health.ready)
        try:
            port = server.start()
        except OSError as error:
            return fail(f"--metrics-address {args.metrics_address}: {error.strerror}; fix: pick a free port")
        log.info("serving metrics and health", address=args.metrics_address, port=port)
    tls = WebhookTlsSettings(namespace=args.lease_namespace)
    try:
        return serve(controller, elector, Background(lambda: maintain_webhook_tls(api, tls)), health)
    finally:
        if server is not None:
            server.stop()


def serve(controller: Controller, elector: LeaderElector, upkeep: Background, health: ControllerHealth) -> int:
    """Try for the lease every retry period; act while leading; exit 1 if the lease is lost.
    The leader runs ``upkeep`` (the webhook's certificates) on taking over and at every resync."""
    signals = StopSignals()
    stop = signals.event
    signals.install()
    controller.start()
    log.info("controller started; waiting for the lease", identity=elector.identity)
    leading, code, since_resync = False, 0, 0.0
    while not stop.is_set():
        now_leading = elector.try_once()
        controller.metrics.set_leading(now_leading)
        controller.metrics.count_lease_round(
            "failed" if elector.round_failed else ("leading" if now_leading else "standby")
        )
        health.turned()
        if now_leading and not leading:
            controller.lead()
            upkeep()
        elif leading and not now_leading:
            # As client-go does: a replica that lost the lease exits, and starts again as a standby.
            log.error("lost leadership; exiting so that only the new leader acts", identity=elector.identity)
            code = 1
            break
        leading = now_leading
        stop.wait(elector.timing.retry_seconds)
        since_resync += elector.timing.retry_seconds
        if leading and since_resync >= controller.settings.resync_seconds:
            controller.resync()
            upkeep()
            since_resync = 0.0
    if signals.received:
        log.info("stop signal received", signal=signals.received[0])
    controller.metrics.set_leading(False)
    controller.stop()
    upkeep.join(timeout=30)
    if code == 0:
        elector.release()
    log.info("controller stopped", identity=elector.identity)
    return code


class Background:
    """A task on a thread of its own, one run at a time: making a key takes seconds, and the lease
    loop must not miss its renewals meanwhile. ``join`` before exit: a thread cut off inside the
    crypto library at interpreter shutdown aborts the process."""

    def __init__(self, task: Callable[[], None]) -> None:
        self._task = task
        self._thread: threading.Thread | None = None

    def __call__(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._task, name="webhook-tls", daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def maintain_webhook_tls(api: Any, settings: WebhookTlsSettings) -> None:
    """The webhook's CA and serving certificate in their Secrets, the caBundle in step, rotated
    before expiry. A failure is logged and retried at the next resync; pods and phases go on."""
    from handler.kube.webhook_tls import WebhookTlsError, ensure_webhook_tls

    try:
        result = ensure_webhook_tls(api, settings, datetime.now(UTC))
    except WebhookTlsError as error:
        log.error("webhook TLS not maintained; retrying at the next resync", error=str(error))
        return
    if not result.configuration_found:
        log.warning(
            "no ValidatingWebhookConfiguration to give the CA bundle to",
            name=settings.webhook_configuration,
            fix="kubectl apply -k deploy/",
        )
