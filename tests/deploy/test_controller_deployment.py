"""The controller's Deployment: two replicas with unique Lease identities, the launcher image
it hands to pods, and a restricted, non-root pod."""

from __future__ import annotations

from handler.core.leader_lease import LeaseTiming
from handler.ops.health_server import parse_address
from tests.deploy.manifests import cli_args, one, pod_spec

DEPLOYMENT = one("Deployment", "qat-handler-controller")
SPEC = pod_spec(DEPLOYMENT)
(CONTAINER,) = SPEC["containers"]


def test_two_replicas_each_named_by_its_pod() -> None:
    assert DEPLOYMENT.body["spec"]["replicas"] == 2
    env = {e["name"]: e for e in CONTAINER["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_the_command_line_parses_and_launchers_get_the_same_image() -> None:
    args = cli_args(CONTAINER, {"POD_NAMESPACE": "qat-handler"})
    assert args.command == "controller"
    assert args.launcher_image == CONTAINER["image"]
    assert args.lease_namespace == DEPLOYMENT.body["metadata"]["namespace"]


def test_a_standby_takes_over_within_15_seconds_and_the_pod_outlives_a_clean_handover() -> None:
    assert LeaseTiming().worst_takeover_seconds <= 15
    assert SPEC["terminationGracePeriodSeconds"] >= 2 * LeaseTiming().retry_seconds


def test_the_pod_is_restricted_and_non_root() -> None:
    assert SPEC["securityContext"]["runAsNonRoot"] is True
    assert SPEC["securityContext"]["runAsUser"] != 0
    assert SPEC["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = CONTAINER["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert not SPEC.get("volumes"), "the controller needs no volume: it only talks to the API server"


def test_probes_and_scrapes_point_at_the_metrics_address() -> None:
    host, port = parse_address(cli_args(CONTAINER, {"POD_NAMESPACE": "qat-handler"}).metrics_address)
    assert host in ("0.0.0.0", "", "::"), "kubelet probes the pod IP; a loopback-only server fails every probe"
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    for kind, path in {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}.items():
        probe = CONTAINER[kind]
        assert probe["httpGet"]["path"] == path, f"{kind} path"
        assert ports[probe["httpGet"]["port"]] == port, f"{kind} port"
    annotations = DEPLOYMENT.body["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(port), "/metrics")
