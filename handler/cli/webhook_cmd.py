"""``qat-handler webhook``: the validating admission webhook for VMIs (the virt-api role)."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import structlog
from kubernetes import client

from handler.cli.common import Formatter, add_permitted_flags, fail, permitted_devices
from handler.core.admission import AdmissionPolicy
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refused
from handler.core.webhook_settings import WebhookTlsSettings
from handler.kube.client import KubeConfigError, api_client
from handler.kube.gate_watch import GateWatch
from handler.ops.health_server import parse_address
from handler.ops.logs import configure_logging
from handler.webhook.certs import CertSource, FileCerts, SecretCerts
from handler.webhook.server import VALIDATE_PATH, WebhookServer

log = structlog.get_logger("qat_handler.cli")
TLS = WebhookTlsSettings()
STACK_ACCOUNTS = ("qat-handler:qat-handler", "qat-handler:qat-handler-controller")
"""The stack's own ServiceAccounts (NAMESPACE:NAME), which may change a VMI's spec."""

EXAMPLES = f"""\
examples:
  # in the Deployment: the certificate from the Secret the controller keeps
  qat-handler webhook --listen 0.0.0.0:8443

  # certificate files of your own (re-read when they change)
  qat-handler webhook --listen 127.0.0.1:8443 --tls-cert-file tls.crt --tls-private-key-file tls.key

reviews are POSTed to https://HOST:PORT{VALIDATE_PATH}; /healthz and /readyz are on the same port.
signals: SIGHUP re-reads --permitted-devices; SIGTERM, SIGINT stop.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "webhook",
        help="run the validating admission webhook for VMIs",
        description="Validate VMI creates and updates (AdmissionReview v1 over HTTPS) with the agent's own "
        "rules: the parser, the QAT feature gate for qats, and the permitted devices. A VMI's spec cannot "
        "change after creation except by the stack's own ServiceAccounts.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="HTTPS address to serve on")
    parser.add_argument("--tls-cert-file", type=Path, default=None, metavar="PATH", help="serving certificate (PEM)")
    parser.add_argument("--tls-private-key-file", type=Path, default=None, metavar="PATH", help="its key (PEM)")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", TLS.namespace),
        help="namespace of the certificate Secret ($POD_NAMESPACE)",
    )
    parser.add_argument("--tls-secret", default=TLS.tls_secret, help="Secret with tls.crt and tls.key")
    parser.add_argument(
        "--kubevirt-namespace", default="kubevirt", help="namespace of ConfigMap kubevirt-config and the KubeVirt CR"
    )
    parser.add_argument(
        "--stack-service-account",
        action="append",
        default=argparse.SUPPRESS,
        metavar="NAMESPACE:NAME",
        help=f"may change a VMI's spec; repeatable (without it: {' and '.join(STACK_ACCOUNTS)})",
    )
    add_permitted_flags(parser)
    parser.add_argument("--log-format", choices=("auto", "console", "json", "journal"), default="auto")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.set_defaults(run=run)


def exempt_users(accounts: list[str]) -> frozenset[str]:
    users = set()
    for account in accounts:
        namespace, sep, name = account.partition(":")
        if not sep or not namespace or not name:
            raise ValueError(
                f"--stack-service-account {account!r} is not NAMESPACE:NAME; fix: e.g. qat-handler:qat-handler"
            )
        users.add(f"system:serviceaccount:{namespace}:{name}")
    return frozenset(users)


class _StartError(Exception):
    """One line with the fix, printed instead of starting."""


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    try:
        address, exempt, permitted, api = _inputs(args)
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


def _inputs(
    args: argparse.Namespace,
) -> tuple[tuple[str, int], frozenset[str], list[PermittedDevices], client.ApiClient]:
    if (args.tls_cert_file is None) != (args.tls_private_key_file is None):
        raise _StartError("--tls-cert-file and --tls-private-key-file go together; fix: give both, or neither")
    try:
        address = parse_address(args.listen)
    except ValueError:
        raise _StartError(f"--listen {args.listen!r} is not HOST:PORT; fix: e.g. --listen 0.0.0.0:8443") from None
    try:
        exempt = exempt_users(getattr(args, "stack_service_account", None) or list(STACK_ACCOUNTS))
        return address, exempt, [permitted_devices(args)], api_client()
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
