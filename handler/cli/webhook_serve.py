"""The running webhook: inputs checked, certificates, feature gates, the server, and signals."""

from __future__ import annotations

import argparse
import gc
import signal
import threading
from types import FrameType

import structlog
from kubernetes import client

from handler.cli.common import fail, permitted_devices
from handler.core.admission import AdmissionPolicy
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refused
from handler.core.webhook_settings import VALIDATE_PATH
from handler.kube.client import KubeConfigError, api_client
from handler.kube.gate_watch import GateWatch
from handler.ops.health_server import parse_address
from handler.ops.logs import configure_logging
from handler.webhook.certs import CertSource, FileCerts, SecretCerts
from handler.webhook.server import WebhookServer

log = structlog.get_logger("qat_handler.cli")


class _StartError(Exception):
    """One line with the fix, printed instead of starting."""


def serve(args: argparse.Namespace, exempt: frozenset[str]) -> int:
    """Serve reviews until SIGTERM or SIGINT (``exempt``: the users who may change a VMI's spec)."""
    configure_logging(args.log_format, args.log_level)
    try:
        address, permitted, api = _inputs(args)
        certs = _cert_source(args, api)
    except _StartError as error:
        return fail(str(error))
    gates = GateWatch(api, args.kubevirt_namespace)

    def policy() -> AdmissionPolicy:
        return AdmissionPolicy(gates.enabled(), permitted[0], exempt)

    ready = threading.Event()
    try:
        server = WebhookServer(address, certs, policy, ready.is_set)
    except OSError as error:
        return fail(f"--listen {args.listen}: {error.strerror}; fix: choose a free address")
    if isinstance(certs, SecretCerts):
        certs.start()
    gates.start()
    # Everything built so far (the client library's models above all) lives as long as the process:
    # keep it out of the collector's scans, whose full passes otherwise stall reviews for tens of ms.
    gc.freeze()
    server.start()
    log.info("webhook serving", address=args.listen, path=VALIDATE_PATH)
    code = _serve(args, gates, ready, permitted, server)
    if isinstance(certs, SecretCerts):
        certs.stop()
    return code


def _inputs(args: argparse.Namespace) -> tuple[tuple[str, int], list[PermittedDevices], client.ApiClient]:
    if (args.tls_cert_file is None) != (args.tls_private_key_file is None):
        raise _StartError("--tls-cert-file and --tls-private-key-file go together; fix: give both, or neither")
    try:
        address = parse_address(args.listen)
    except ValueError:
        raise _StartError(f"--listen {args.listen!r} is not HOST:PORT; fix: e.g. --listen 0.0.0.0:8443") from None
    try:
        return address, [permitted_devices(args)], api_client()
    except (ValueError, KubeConfigError) as error:
        raise _StartError(str(error)) from None
    except Refused as refused:
        raise _StartError(refused.refusal.line()) from None


def _cert_source(args: argparse.Namespace, api: client.ApiClient) -> CertSource:
    if args.tls_cert_file is None:
        return SecretCerts(api, args.namespace, args.tls_secret)
    certs = FileCerts(args.tls_cert_file, args.tls_private_key_file)
    if certs.context() is None:
        raise _StartError(
            f"{args.tls_cert_file}: no usable certificate and key; fix: give PEM files that belong together"
        )
    return certs


def _serve(
    args: argparse.Namespace,
    gates: GateWatch,
    ready: threading.Event,
    permitted: list[PermittedDevices],
    server: WebhookServer,
) -> int:
    stop, reload = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        (reload if signum == signal.SIGHUP else stop).set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    while not stop.is_set():
        if not ready.is_set() and gates.wait_synced(0.5):
            ready.set()
            log.info("feature gates read", gates=sorted(gates.enabled()))
        if reload.is_set():
            reload.clear()
            try:
                permitted[0] = permitted_devices(args)
                log.info("permitted devices re-read")
            except Refused as refused:
                log.error("permitted devices not reloaded; keeping the previous list", error=refused.refusal.line())
        stop.wait(0.5)
    server.stop()
    gates.stop()
    return 0
