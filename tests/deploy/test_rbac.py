"""RBAC in deploy/ grants each identity (agent, controller, webhook) exactly what its code asks
the API server for.

The calls are read from handler/ itself: every reference to a method of the official
client's ``*Api`` classes is found and mapped to (scope, API group, resource, verb) by
API_CALLS below. A new call that is not in that table fails the test, and so does a grant
that no call needs. Whoever adds an API call updates API_CALLS, EXPECTED_* and the RBAC.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from handler.kube.source import CONFIGMAP_NAME
from tests.deploy.manifests import REPO, cli_args, one, pod_spec

ANY_NAMESPACE = "all namespaces"
KUBEVIRT_NAMESPACE = "kubevirt namespace"
"""Calls whose namespace argument is the agent's --kubevirt-namespace."""
STACK_NAMESPACE = "stack namespace"
"""Calls whose namespace argument (named ``stack_namespace``) is the stack's own, qat-handler."""
LEASE_NAMESPACE = "lease namespace"
"""Calls whose namespace argument is the controller's --lease-namespace (its own namespace)."""
AGENT_ENTRY = "handler.cli.agent_cmd"
"""The agent's grants are the calls in the modules its subcommand imports, directly or not."""
CONTROLLER_ENTRY = "handler.cli.controller_cmd"

Grant = tuple[str, str, str, str]
"""(scope, API group, resource[/subresource], verb)"""

EXPECTED_CLUSTER_WIDE = {
    ("kubevirt.io", "virtualmachineinstances", "get"),
    ("kubevirt.io", "virtualmachineinstances", "list"),
    ("kubevirt.io", "virtualmachineinstances", "watch"),
    ("kubevirt.io", "virtualmachineinstances", "patch"),
    ("kubevirt.io", "virtualmachineinstances/status", "patch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("k8s.cni.cncf.io", "network-attachment-definitions", "get"),
    ("", "secrets", "get"),
}
EXPECTED_IN_KUBEVIRT_NAMESPACE = {
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
    ("kubevirt.io", "kubevirts", "list"),
    ("kubevirt.io", "kubevirts", "watch"),
    ("apps", "deployments", "get"),
}
CONTROLLER_CLUSTER_WIDE = {
    ("kubevirt.io", "virtualmachineinstances", "list"),
    ("kubevirt.io", "virtualmachineinstances", "watch"),
    ("kubevirt.io", "virtualmachineinstances", "patch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("", "events", "create"),
    ("", "events", "patch"),
}
CONTROLLER_IN_KUBEVIRT_NAMESPACE = {
    ("kubevirt.io", "kubevirts", "list"),
    ("kubevirt.io", "kubevirts", "watch"),
    ("apps", "deployments", "get"),
}
CONTROLLER_IN_LEASE_NAMESPACE = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}


@dataclass(frozen=True, slots=True)
class ApiCall:
    """How one client method is authorised. Argument positions are the method's own."""

    verbs: tuple[str, ...]
    resource: str | None = None
    """A core resource; None for custom objects, whose group and plural are arguments 0 and plural."""
    plural: int | None = None
    namespace: int | None = None
    """None: the call spans all namespaces."""
    subresource: str = ""
    group: str = ""
    """The API group of a built-in resource (``resource``); custom objects name theirs in an argument."""


# Every list is watched too: handler/kube/informer.py watches with the call it lists with.
API_CALLS = {
    "list_cluster_custom_object": ApiCall(("list", "watch"), plural=2),
    "list_namespaced_custom_object": ApiCall(("list", "watch"), plural=3, namespace=2),
    "get_namespaced_custom_object": ApiCall(("get",), plural=3, namespace=2),
    "patch_namespaced_custom_object": ApiCall(("patch",), plural=3, namespace=2),
    "patch_namespaced_custom_object_status": ApiCall(("patch",), plural=3, namespace=2, subresource="status"),
    "list_namespaced_config_map": ApiCall(("list", "watch"), "configmaps", namespace=0),
    "list_pod_for_all_namespaces": ApiCall(("list", "watch"), "pods"),
    "create_namespaced_event": ApiCall(("create",), "events", namespace=0),
    "patch_namespaced_event": ApiCall(("patch",), "events", namespace=1),
    "list_namespaced_secret": ApiCall(("list", "watch"), "secrets", namespace=0),
    "read_namespaced_secret": ApiCall(("get",), "secrets", namespace=1),
    "create_namespaced_secret": ApiCall(("create",), "secrets", namespace=0),
    "replace_namespaced_secret": ApiCall(("update",), "secrets", namespace=1),
    "read_validating_webhook_configuration": ApiCall(
        ("get",), "validatingwebhookconfigurations", group="admissionregistration.k8s.io"
    ),
    "patch_validating_webhook_configuration": ApiCall(
        ("patch",), "validatingwebhookconfigurations", group="admissionregistration.k8s.io"
    ),
    "create_namespaced_pod": ApiCall(("create",), "pods", namespace=0),
    "delete_namespaced_pod": ApiCall(("delete",), "pods", namespace=1),
    "read_namespaced_deployment": ApiCall(("get",), "deployments", namespace=1, group="apps"),
    "read_namespaced_lease": ApiCall(("get",), "leases", namespace=1, group="coordination.k8s.io"),
    "create_namespaced_lease": ApiCall(("create",), "leases", namespace=0, group="coordination.k8s.io"),
    "replace_namespaced_lease": ApiCall(("update",), "leases", namespace=1, group="coordination.k8s.io"),
}
DISCOVERY = {"get_api_resources"}
"""GET /apis/<group>/<version>: granted to every authenticated client by system:discovery."""


def client_methods() -> set[str]:
    names: set[str] = set()
    for name, cls in inspect.getmembers(kubernetes.client, inspect.isclass):
        if name.endswith("Api"):
            names |= {m for m in dir(cls) if "_" in m.strip("_") and not m.startswith("_")}
    return {m for m in names if not m.endswith("_with_http_info")}


METHODS = client_methods()


@dataclass(frozen=True, slots=True)
class Found:
    where: str
    method: str
    args: tuple[ast.expr, ...]


def find_calls(source: str, where: str) -> Iterator[Found]:
    """Client method references in a module, with the arguments they are called with.

    A method may be called directly (``api.list_x(...)``) or picked into a local name first
    (``call = api.patch_x if a else api.patch_y`` then ``call(...)``); both are followed.
    """
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in METHODS):
            continue
        parent = parents.get(node)
        label = f"{where}:{node.lineno}"
        if isinstance(parent, ast.Call) and parent.func is node:
            yield Found(label, node.attr, tuple(parent.args))
            continue
        calls = list(_calls_through_local_name(node, parents))
        assert calls, f"{label}: {node.attr} is referenced but never called in a way this test can follow"
        for call in calls:
            yield Found(label, node.attr, tuple(call.args))


def _calls_through_local_name(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> Iterator[ast.Call]:
    assign = node
    while assign in parents and not isinstance(assign, ast.Assign):
        assign = parents[assign]
    function = assign
    while function in parents and not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        function = parents[function]
    if not isinstance(assign, ast.Assign):
        return
    names = {t.id for t in assign.targets if isinstance(t, ast.Name)}
    for call in ast.walk(function):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in names:
            yield call


def grants(found: Found, module: str | None) -> set[Grant]:
    if found.method in DISCOVERY:
        return set()
    spec = API_CALLS.get(found.method)
    assert spec is not None, (
        f"{found.where} calls the Kubernetes API with {found.method}: add it to API_CALLS in "
        f"{Path(__file__).relative_to(REPO)} and grant it in deploy/rbac-*.yaml"
    )
    if spec.resource is not None:
        group, resource = spec.group, spec.resource
    else:
        assert spec.plural is not None
        group, resource = _value(found.args[0], module, found), _value(found.args[spec.plural], module, found)
    if spec.subresource:
        resource = f"{resource}/{spec.subresource}"
    scope = ANY_NAMESPACE
    if spec.namespace is not None:
        named = ast.unparse(found.args[spec.namespace])
        scope = {"kubevirt_namespace": KUBEVIRT_NAMESPACE, "stack_namespace": STACK_NAMESPACE}.get(named, scope)
        if named.endswith("lease_namespace"):
            scope = LEASE_NAMESPACE
    return {(scope, group, resource, verb) for verb in spec.verbs}


def _value(expr: ast.expr, module: str | None, found: Found) -> str:
    """A string argument: a literal, or a module-level constant of the calling module."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name) and module is not None:
        value = getattr(importlib.import_module(module), expr.id, None)
        if isinstance(value, str):
            return value
    raise AssertionError(f"{found.where}: cannot tell the group/resource from {ast.unparse(expr)}")


def module_path(module: str) -> Path:
    base = REPO.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def reachable(entry: str) -> set[str]:
    """``entry`` and every handler module it imports, directly or through others."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        path = module_path(module)
        if module in seen or not path.exists():
            continue
        seen.add(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("handler")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("handler"):
                todo += [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
    return seen


def code_grants(entry: str | None = None) -> set[Grant]:
    """The grants the calls need: in every handler module, or in those ``entry`` reaches."""
    out: set[Grant] = set()
    modules = reachable(entry) if entry else None
    for path in sorted((REPO / "handler").rglob("*.py")):
        relative = path.relative_to(REPO)
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        if modules is not None and module not in modules:
            continue
        for found in find_calls(path.read_text(encoding="utf-8"), str(relative)):
            out |= grants(found, module)
    return out


def rules_of(doc_kind: str, name: str = "qat-handler") -> tuple[str, list[dict[str, Any]]]:
    doc = one(doc_kind, name).body
    return str(doc["metadata"].get("namespace", "")), list(doc.get("rules") or [])


def flatten(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert not rule.get("nonResourceURLs"), "the agent requests no non-resource URL"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    out.add((group, resource, verb))
    return out


# -- the tests ------------------------------------------------------------------------------


def test_the_agent_makes_exactly_the_calls_written_down_here() -> None:
    expected = {(ANY_NAMESPACE, *g) for g in EXPECTED_CLUSTER_WIDE}
    expected |= {(KUBEVIRT_NAMESPACE, *g) for g in EXPECTED_IN_KUBEVIRT_NAMESPACE}
    assert code_grants(AGENT_ENTRY) == expected


def test_the_controller_makes_exactly_the_calls_written_down_here() -> None:
    """Its own calls, plus the webhook TLS keeper's it runs (tests/deploy/test_rbac_webhook.py)."""
    from tests.deploy.test_rbac_webhook import TLS_ENTRY

    expected = {(ANY_NAMESPACE, *g) for g in CONTROLLER_CLUSTER_WIDE}
    expected |= {(KUBEVIRT_NAMESPACE, *g) for g in CONTROLLER_IN_KUBEVIRT_NAMESPACE}
    expected |= {(LEASE_NAMESPACE, *g) for g in CONTROLLER_IN_LEASE_NAMESPACE}
    assert code_grants(CONTROLLER_ENTRY) == expected | code_grants(TLS_ENTRY)


def test_controller_roles_grant_exactly_its_calls_where_it_makes_them() -> None:
    _, cluster = rules_of("ClusterRole", "qat-handler-controller")
    assert flatten(cluster) == CONTROLLER_CLUSTER_WIDE
    assert not any(rule.get("resourceNames") for rule in cluster)
    controller = one("Deployment", "qat-handler-controller")
    args = cli_args(pod_spec(controller)["containers"][0], {"POD_NAMESPACE": controller.body["metadata"]["namespace"]})
    namespace, rules = rules_of("Role", "qat-handler-controller")
    assert namespace == args.kubevirt_namespace
    assert flatten(rules) == CONTROLLER_IN_KUBEVIRT_NAMESPACE
    namespace, rules = rules_of("Role", "qat-handler-controller-lease")
    assert namespace == args.lease_namespace == controller.body["metadata"]["namespace"]
    assert flatten(rules) == CONTROLLER_IN_LEASE_NAMESPACE
    named = [r for r in rules if r.get("resourceNames")]
    assert named and all(r["resourceNames"] == [args.lease_name] for r in named)
    assert {v for r in rules if not r.get("resourceNames") for v in r["verbs"]} == {"create"}


def test_controller_bindings_name_its_service_account() -> None:
    controller = one("Deployment", "qat-handler-controller")
    account = pod_spec(controller)["serviceAccountName"]
    namespace = controller.body["metadata"]["namespace"]
    assert one("ServiceAccount", account).body["metadata"]["namespace"] == namespace
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    for binding, role, name in (
        ("ClusterRoleBinding", "ClusterRole", "qat-handler-controller"),
        ("RoleBinding", "Role", "qat-handler-controller"),
        ("RoleBinding", "Role", "qat-handler-controller-lease"),
    ):
        body = one(binding, name).body
        assert body["subjects"] == subject
        assert body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role, "name": name}
        assert body["metadata"].get("namespace") == one(role, name).body["metadata"].get("namespace")


def test_a_new_api_call_is_noticed() -> None:
    source = "def drop(api, ns):\n    api.delete_namespaced_config_map('gates', ns)\n"
    (found,) = find_calls(source, "example.py")
    with pytest.raises(AssertionError, match="delete_namespaced_config_map"):
        grants(found, None)


def test_a_call_through_a_local_name_is_followed() -> None:
    source = (
        "def patch(api, ns, status):\n"
        "    call = api.patch_namespaced_custom_object_status if status else api.patch_namespaced_custom_object\n"
        "    call('kubevirt.io', 'v1', ns, 'virtualmachineinstances', 'x', {})\n"
    )
    found = list(find_calls(source, "example.py"))
    assert {f.method for f in found} == {"patch_namespaced_custom_object_status", "patch_namespaced_custom_object"}
    assert set().union(*(grants(f, None) for f in found)) == {
        (ANY_NAMESPACE, "kubevirt.io", "virtualmachineinstances/status", "patch"),
        (ANY_NAMESPACE, "kubevirt.io", "virtualmachineinstances", "patch"),
    }


def test_cluster_role_grants_exactly_the_cluster_wide_calls() -> None:
    _, rules = rules_of("ClusterRole")
    assert flatten(rules) == EXPECTED_CLUSTER_WIDE
    assert not any(rule.get("resourceNames") for rule in rules)


def test_kubevirt_role_grants_exactly_the_gate_reads_in_the_agents_kubevirt_namespace() -> None:
    namespace, rules = rules_of("Role")
    agent = pod_spec(one("DaemonSet"))["containers"][0]
    assert namespace == cli_args(agent).kubevirt_namespace
    assert flatten(rules) == EXPECTED_IN_KUBEVIRT_NAMESPACE


def test_configmap_access_is_limited_to_the_one_the_agent_selects_by_name(tmp_path: Path) -> None:
    """resourceNames on list/watch works only with a metadata.name field selector on every request."""
    from kubernetes import client

    from handler.kube.handoff_slots import HandoffSlots
    from handler.kube.source import KubeSource

    _, rules = rules_of("Role")
    (configmaps,) = [r for r in rules if "configmaps" in r["resources"]]
    assert configmaps.get("resourceNames") == [CONFIGMAP_NAME]
    source = KubeSource(client.ApiClient(), "node01", HandoffSlots(tmp_path))
    # Informer keeps its selectors private; they are what every list and watch sends.
    assert source.configmaps._selectors.get("field_selector") == f"metadata.name={CONFIGMAP_NAME}"


def test_bindings_give_the_roles_to_the_daemonsets_service_account() -> None:
    daemonset = one("DaemonSet")
    account = pod_spec(daemonset)["serviceAccountName"]
    namespace = daemonset.body["metadata"]["namespace"]
    assert one("ServiceAccount", account).body["metadata"]["namespace"] == namespace
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        body = one(binding, "qat-handler").body
        assert body["subjects"] == subject
        assert body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role, "name": "qat-handler"}
    role_namespace, _ = rules_of("Role")
    assert one("RoleBinding", "qat-handler").body["metadata"]["namespace"] == role_namespace
