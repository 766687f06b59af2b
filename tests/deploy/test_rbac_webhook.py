"""The webhook's manifests: RBAC derived from the calls its code makes (as test_rbac.py does for
the agent), the TLS keeper's RBAC from handler/kube/webhook_tls.py, and the wiring of Service,
Deployment and ValidatingWebhookConfiguration to the names the code uses."""

from __future__ import annotations

from typing import Any

from handler.cli.webhook_cmd import STACK_ACCOUNTS
from handler.core.feature_gates import CONFIGMAP_NAME
from handler.core.vmi_parse import API_VERSIONS
from handler.core.webhook_settings import VALIDATE_PATH, WebhookTlsSettings
from tests.deploy.manifests import REPO, cli_args, load_all, one, pod_spec
from tests.deploy.test_rbac import (
    AGENT_ENTRY,
    ANY_NAMESPACE,
    CONTROLLER_ENTRY,
    KUBEVIRT_NAMESPACE,
    STACK_NAMESPACE,
    code_grants,
    find_calls,
    flatten,
    reachable,
)

TLS = WebhookTlsSettings()
WEBHOOK_ENTRY = "handler.cli.webhook_cmd"
TLS_ENTRY = "handler.kube.webhook_tls"
ENTRIES = (AGENT_ENTRY, CONTROLLER_ENTRY, WEBHOOK_ENTRY, TLS_ENTRY)
"""Every identity's code. A module that calls the API must be reached from one of them."""

WEBHOOK_IN_KUBEVIRT = {
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
    ("kubevirt.io", "kubevirts", "list"),
    ("kubevirt.io", "kubevirts", "watch"),
}
WEBHOOK_IN_STACK = {("", "secrets", "list"), ("", "secrets", "watch")}
TLS_IN_STACK = {("", "secrets", "get"), ("", "secrets", "create"), ("", "secrets", "update")}
TLS_CLUSTER_WIDE = {
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "get"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch"),
}


def role(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """The one document of this kind and name (in ``namespace`` when given)."""
    if namespace is None:
        return one(kind, name).body
    matches = [d.body for d in load_all() if d.kind == kind and d.name == name]
    matches = [b for b in matches if b["metadata"].get("namespace") == namespace]
    assert len(matches) == 1, f"expected one {kind} {name} in {namespace}, found {len(matches)}"
    return matches[0]


WEBHOOK = one("Deployment", "qat-handler-webhook")
WEBHOOK_ARGS = cli_args(pod_spec(WEBHOOK)["containers"][0], {"POD_NAMESPACE": TLS.namespace})


def test_the_webhook_makes_exactly_these_calls() -> None:
    expected = {(KUBEVIRT_NAMESPACE, *g) for g in WEBHOOK_IN_KUBEVIRT}
    expected |= {(STACK_NAMESPACE, *g) for g in WEBHOOK_IN_STACK}
    assert code_grants(WEBHOOK_ENTRY) == expected


def test_the_tls_keeper_makes_exactly_these_calls() -> None:
    expected = {(STACK_NAMESPACE, *g) for g in TLS_IN_STACK} | {(ANY_NAMESPACE, *g) for g in TLS_CLUSTER_WIDE}
    assert code_grants(TLS_ENTRY) == expected


def test_every_module_that_calls_the_api_belongs_to_an_identity() -> None:
    covered = set().union(*(reachable(entry) for entry in ENTRIES))
    for path in sorted((REPO / "handler").rglob("*.py")):
        relative = path.relative_to(REPO)
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        calls = list(find_calls(path.read_text(encoding="utf-8"), str(relative)))
        assert not calls or module in covered, f"{relative} calls the API but no identity in ENTRIES imports it"


def test_webhook_roles_grant_exactly_its_calls_with_names_pinned() -> None:
    in_kubevirt = role("Role", "qat-handler-webhook", WEBHOOK_ARGS.kubevirt_namespace)["rules"]
    assert flatten(in_kubevirt) == WEBHOOK_IN_KUBEVIRT
    assert next(r for r in in_kubevirt if "configmaps" in r["resources"])["resourceNames"] == [CONFIGMAP_NAME]
    in_stack = role("Role", "qat-handler-webhook", WEBHOOK_ARGS.namespace)["rules"]
    assert flatten(in_stack) == WEBHOOK_IN_STACK
    assert [r["resourceNames"] for r in in_stack] == [[WEBHOOK_ARGS.tls_secret]]
    account = pod_spec(WEBHOOK)["serviceAccountName"]
    for namespace in (WEBHOOK_ARGS.kubevirt_namespace, WEBHOOK_ARGS.namespace):
        binding = role("RoleBinding", "qat-handler-webhook", namespace)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": TLS.namespace}]
        assert binding["roleRef"]["name"] == "qat-handler-webhook"


def test_tls_roles_grant_exactly_the_keepers_calls_to_the_controller() -> None:
    rules = role("Role", "qat-handler-webhook-tls")["rules"]
    assert flatten(rules) == TLS_IN_STACK
    named = [r for r in rules if r.get("resourceNames")]
    assert [sorted(r["resourceNames"]) for r in named] == [sorted([TLS.ca_secret, TLS.tls_secret])]
    assert all(r["verbs"] == ["create"] for r in rules if not r.get("resourceNames"))
    cluster = role("ClusterRole", "qat-handler-webhook-tls")["rules"]
    assert flatten(cluster) == TLS_CLUSTER_WIDE
    assert cluster[0]["resourceNames"] == [TLS.webhook_configuration]
    controller = next(a for a in STACK_ACCOUNTS if a.endswith("controller")).split(":")
    subject = [{"kind": "ServiceAccount", "name": controller[1], "namespace": controller[0]}]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        assert role(kind, "qat-handler-webhook-tls")["subjects"] == subject


def test_the_webhook_configuration_matches_the_code() -> None:
    config = one("ValidatingWebhookConfiguration", TLS.webhook_configuration).body
    (hook,) = config["webhooks"]
    assert (hook["failurePolicy"], hook["sideEffects"], hook["admissionReviewVersions"]) == ("Fail", "None", ["v1"])
    assert hook["timeoutSeconds"] == 5, "README.md says 5 s"
    service = hook["clientConfig"]["service"]
    assert (service["namespace"], service["name"], service["path"]) == (TLS.namespace, TLS.service, VALIDATE_PATH)
    assert "caBundle" not in hook["clientConfig"], "the controller fills the caBundle in"
    (rule,) = hook["rules"]
    assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    assert rule["apiGroups"] == ["kubevirt.io"] and rule["resources"] == ["virtualmachineinstances"]
    assert [f"kubevirt.io/{v}" for v in rule["apiVersions"]] == list(API_VERSIONS)


def test_the_service_reaches_the_webhooks_port() -> None:
    svc = one("Service", TLS.service).body
    assert svc["metadata"]["namespace"] == TLS.namespace == WEBHOOK.body["metadata"]["namespace"]
    labels = WEBHOOK.body["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    container = pod_spec(WEBHOOK)["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["port"] == 443 and named[port["targetPort"]] == int(WEBHOOK_ARGS.listen.rsplit(":", 1)[1])


def test_a_drain_keeps_one_webhook_replica() -> None:
    budget = one("PodDisruptionBudget", "qat-handler-webhook").body
    assert budget["spec"]["minAvailable"] == 1 < WEBHOOK.body["spec"]["replicas"]
    assert (
        budget["spec"]["selector"]["matchLabels"].items()
        <= WEBHOOK.body["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_webhook_pod_is_restricted() -> None:
    spec = pod_spec(WEBHOOK)
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] and not container["allowPrivilegeEscalation"]
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert not any("hostPath" in v for v in spec.get("volumes") or [])
