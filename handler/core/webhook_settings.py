"""Where the webhook and its TLS live: names shared by the webhook, the controller and the manifests."""

from __future__ import annotations

from dataclasses import dataclass, field

from handler.core.cert_rotation import TlsLifetimes

VALIDATE_PATH = "/validate-virtualmachineinstances"
"""The path kube-apiserver POSTs reviews to (the ValidatingWebhookConfiguration names it too)."""


@dataclass(frozen=True, slots=True)
class WebhookTlsSettings:
    namespace: str = "qat-handler"
    """Where the webhook's Service and both Secrets live."""
    service: str = "qat-handler-webhook"
    """The Service kube-apiserver calls; the certificate names <service>.<namespace>.svc and the rest."""
    ca_secret: str = "qat-handler-webhook-ca"
    tls_secret: str = "qat-handler-webhook-tls"
    webhook_configuration: str = "qat-handler"
    """The ValidatingWebhookConfiguration whose every webhook gets the caBundle."""
    lifetimes: TlsLifetimes = field(default_factory=TlsLifetimes)

    def dns_names(self) -> list[str]:
        base = f"{self.service}.{self.namespace}"
        return [f"{base}.svc", self.service, base, f"{base}.svc.cluster.local"]
