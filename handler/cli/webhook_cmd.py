"""``qat-handler webhook``: the validating admission webhook for VMIs (the virt-api role)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from handler.cli.common import Formatter, add_permitted_flags, fail
from handler.core.webhook_settings import VALIDATE_PATH, WebhookTlsSettings

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


def run(args: argparse.Namespace) -> int:
    try:
        exempt = exempt_users(getattr(args, "stack_service_account", None) or list(STACK_ACCOUNTS))
    except ValueError as error:
        return fail(str(error))
    # Imported here: the Kubernetes client alone takes a quarter of a second to import, and
    # no other subcommand has a use for it.
    from handler.cli.webhook_serve import serve

    return serve(args, exempt)
