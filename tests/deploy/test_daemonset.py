"""The DaemonSet runs the agent the way the code expects: its command line parses with the
real CLI, its probes hit the health server's endpoints on the --metrics-address port, its
mounts are the paths the agent is told to use, and its privileges are the documented few."""

from __future__ import annotations

import argparse
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.kube.handoff_slots import SLOTS_MODE, HandoffSlots
from handler.ops.health_server import HealthServer, parse_address
from handler.ops.metrics import Metrics
from tests.deploy.manifests import Obj, cli_args, container_port, containers, mounts, one, pod_spec, walk

DAEMONSET = one("DaemonSet")
SPEC = pod_spec(DAEMONSET)
(AGENT,) = [c for c in SPEC["containers"] if c["name"] == "agent"]
LIBVIRT_SOCKET_DIRS = ("/run/libvirt", "/var/run/libvirt")
KEEP_GRACE_LIMIT = 60
"""With --on-stop keep the agent waits for no guest; a longer grace only slows rollouts."""


def agent_args() -> argparse.Namespace:
    return cli_args(AGENT, {"NODE_NAME": "node01"})


def host_path(volume: Obj) -> str:
    assert "hostPath" in volume, f"volume {volume['name']} is not a hostPath"
    return str(volume["hostPath"]["path"])


def test_the_command_line_is_a_kubernetes_agent_for_the_real_cli() -> None:
    args = agent_args()
    assert args.command == "agent"
    assert args.kubernetes
    assert args.on_stop == "keep", "the DaemonSet must leave guests running when the agent stops"
    assert args.log_format == "json", "kubectl logs should get JSON lines"
    assert args.connect == "qemu:///system"
    assert args.metrics_address


def test_node_name_comes_from_the_downward_api() -> None:
    env = {e["name"]: e for e in AGENT.get("env") or []}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert agent_args().node_name == "node01"


def test_probes_point_at_the_metrics_address() -> None:
    host, port = parse_address(agent_args().metrics_address)
    assert host in ("0.0.0.0", "", "::"), "kubelet probes the pod IP; a loopback-only server fails every probe"
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for kind, path in expected.items():
        probe = AGENT[kind]["httpGet"]
        assert probe["path"] == path, f"{kind} path"
        assert container_port(AGENT, probe["port"]) == port, f"{kind} port"
    annotations = DAEMONSET.body["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def probe_paths() -> Iterator[str]:
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        yield AGENT[kind]["httpGet"]["path"]
    yield DAEMONSET.body["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_probe_paths_are_the_health_servers_endpoints() -> None:
    """A probe on a path the server does not serve would fail (404) or, worse, a catch-all would pass."""
    healthy = {"ok": True}
    server = HealthServer("127.0.0.1:0", Metrics(), lambda: (healthy["ok"], "x"), lambda: (healthy["ok"], "x"))
    port = server.start()
    try:
        for path in probe_paths():
            assert status_of(f"http://127.0.0.1:{port}{path}") == 200, path
        healthy["ok"] = False
        for path in probe_paths():
            if path != "/metrics":
                assert status_of(f"http://127.0.0.1:{port}{path}") == 503, f"{path} does not reflect the probe"
    finally:
        server.stop()


def test_grace_fits_the_keep_stop_policy() -> None:
    assert agent_args().on_stop == "keep"
    assert 0 < SPEC["terminationGracePeriodSeconds"] <= KEEP_GRACE_LIMIT


def test_mounts_are_the_paths_the_agent_is_given() -> None:
    args = agent_args()
    found = mounts(AGENT, SPEC)
    # Same path inside and out: launcher pods mount <run-dir>/pods from the host, and the
    # host's libvirt opens <state-dir>/logs/*.serial.log named in the domain XML.
    for path in (args.run_dir, args.state_dir):
        mount, volume = found[str(path)]
        assert host_path(volume) == str(path)
        assert not mount.get("readOnly")
    for inside, outside in (("sys", "/sys"), ("dev/vfio", "/dev/vfio")):
        mount, volume = found[str(args.host_root / inside)]
        assert host_path(volume) == outside
        assert mount.get("readOnly") is True, f"{outside} must be read-only"
    libvirt = [p for p in LIBVIRT_SOCKET_DIRS if p in found]
    assert len(libvirt) == 1, "mount the directory of the libvirt socket"
    assert host_path(found[libvirt[0]][1]) in LIBVIRT_SOCKET_DIRS
    assert found[libvirt[0]][0].get("readOnly") is True, "connecting to a socket needs no write access"
    accounted = {str(args.run_dir), str(args.state_dir), str(args.host_root / "sys"), str(args.host_root / "dev/vfio")}
    socket = getattr(args, "pod_resources_socket", None)
    if socket is not None:
        accounted.add(str(Path(socket).parent))
    for path, (_, volume) in found.items():
        if "hostPath" in volume:
            assert path in accounted | set(libvirt), f"unexplained hostPath mount {path}"


def test_the_agent_opens_the_slot_parent_to_non_root_launchers(tmp_path: Path) -> None:
    """kubelet makes each pod's slot with the mode of <run-dir>/pods; the agent sets that mode."""
    HandoffSlots(tmp_path).scan()
    assert stat.S_IMODE((tmp_path / "pods").stat().st_mode) == SLOTS_MODE


def test_nothing_is_privileged_and_every_capability_is_dropped() -> None:
    assert not any(key == "privileged" and value is True for key, value in walk(DAEMONSET.body))
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert not SPEC.get(flag), flag
    # Uid 0, deliberately: libvirtd admits a uid-0 peer without polkit (see daemonset.yaml).
    assert SPEC["securityContext"]["runAsUser"] == 0
    assert SPEC.get("hostUsers") is True
    for container in containers(SPEC):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]


def test_every_container_has_requests_and_a_memory_limit() -> None:
    for container in containers(SPEC):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_scheduling_and_rollout() -> None:
    assert SPEC["priorityClassName"] == "system-node-critical"
    strategy = DAEMONSET.body["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert SPEC["nodeSelector"].get("intel.feature.node.kubernetes.io/qat") == "true"


def test_kubelets_pod_resources_socket_is_mounted_where_the_agent_looks() -> None:
    """Where the CLI has --pod-resources-socket, the socket's directory is mounted from the
    same host path (read-only is enough to connect); without it the allocation check is off."""
    socket = getattr(agent_args(), "pod_resources_socket", None)
    if socket is None:
        pytest.skip("this agent has no --pod-resources-socket")
    mount, volume = mounts(AGENT, SPEC)[str(Path(socket).parent)]
    assert host_path(volume) == str(Path(socket).parent)
    assert mount.get("readOnly") is True
