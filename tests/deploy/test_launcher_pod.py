"""The example launcher pod gives `qat-handler launcher` all it needs through the downward
API, passes the agent's own handoff checks for the example VMI, follows KubeVirt's grace
margins, mounts only its own slot, and is not privileged."""

from __future__ import annotations

import argparse
import collections
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from handler.core.grace_margins import launcher_grace, pod_grace
from handler.core.handoff import Handoff
from handler.core.vmi_parse import parse_vmi
from handler.kube.handoff_slots import SLOTS_MODE
from handler.kube.launcher_pods import CREATED_BY_LABEL, handoff_refusal
from tests.deploy.manifests import EXAMPLES, REPO, Obj, cli_args, containers, mounts, one, pod_spec, walk

POD = one("Pod", under=EXAMPLES).body
SPEC = pod_spec(one("Pod", under=EXAMPLES))
(LAUNCHER,) = SPEC["containers"]
VMI_UID = POD["metadata"]["labels"][CREATED_BY_LABEL]
VMI = parse_vmi(one("VirtualMachineInstance", under=EXAMPLES).body, default_uid=VMI_UID)
POD_UID = "0d4b0f3e-2a51-4f0e-9f36-8f1b7a2f9c11"
"""What the API server would give the pod; the downward API hands it to the container."""
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def downward_env(container: Obj) -> dict[str, str]:
    """The container's environment as kubelet would set it for POD with uid POD_UID."""
    meta = {**POD["metadata"], "uid": POD_UID}
    env = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        path = entry["valueFrom"]["fieldRef"]["fieldPath"]
        if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
            env[entry["name"]] = str(meta[path.split(".")[1]])
        elif match := _FIELD.match(path):
            env[entry["name"]] = str((meta.get(match.group(1)) or {})[match.group(2)])
        else:
            raise AssertionError(f"fieldPath {path} is not one this test resolves")
    return env


def launcher_args() -> argparse.Namespace:
    return cli_args(LAUNCHER, downward_env(LAUNCHER))


def test_the_launcher_learns_its_vmi_and_pod_from_the_downward_api() -> None:
    args = launcher_args()
    assert args.command == "launcher"
    assert (args.namespace, args.name, args.uid) == (VMI.namespace, VMI.name, VMI.uid)
    assert args.pod_uid == POD_UID
    assert args.grace_seconds == VMI.grace_seconds
    assert str(args.run_dir) in mounts(LAUNCHER, SPEC), "the launcher must write where its slot is mounted"


def test_the_agent_accepts_this_pods_handoff_for_the_example_vmi() -> None:
    args = launcher_args()
    handoff = Handoff(args.namespace, args.name, args.uid, args.pod_uid, env=(("QAT0", "0000:3d:01.0"),))
    assert handoff_refusal(VMI, POD_UID, handoff, {**POD, "metadata": {**POD["metadata"], "uid": POD_UID}}) is None


def test_the_uid_placeholder_is_a_uuid_and_the_scheduler_picks_the_node() -> None:
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", VMI_UID)
    assert POD["metadata"]["namespace"] == VMI.namespace
    assert "nodeName" not in SPEC and "nodeSelector" not in SPEC


def test_grace_periods_follow_kubevirts_margins() -> None:
    assert SPEC["terminationGracePeriodSeconds"] == VMI.grace_seconds + 30 == pod_grace(VMI.grace_seconds)
    assert launcher_grace(VMI.grace_seconds) == VMI.grace_seconds + 15 < SPEC["terminationGracePeriodSeconds"]
    assert downward_env(LAUNCHER)["VMI_GRACE_SECONDS"] == str(VMI.grace_seconds)


def test_the_pod_mounts_only_its_own_slot_of_the_agents_run_dir() -> None:
    from tests.deploy.test_daemonset import agent_args

    (slot,) = [(m, v) for m, v in mounts(LAUNCHER, SPEC).values() if "hostPath" in v]
    mount, volume = slot
    assert mount.get("subPathExpr") == "$(POD_UID)"
    assert "subPath" not in mount
    assert not mount.get("readOnly")
    env = {e["name"]: e for e in LAUNCHER["env"]}
    assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    assert volume["hostPath"]["path"] == str(agent_args().run_dir / "pods")
    # Directory, not DirectoryOrCreate: see the volume's comment and the permission test below.
    assert volume["hostPath"]["type"] == "Directory"


def test_one_qat_resource_per_qat_device() -> None:
    wanted = collections.Counter(request.resource for request in VMI.devices)
    limits = LAUNCHER["resources"]["limits"]
    requests = LAUNCHER["resources"].get("requests") or {}
    for resource, count in wanted.items():
        assert int(limits.get(resource, 0)) == count, f"limits.{resource}"
        assert int(requests.get(resource, count)) == count, f"requests.{resource} must equal limits"


def test_the_pod_is_not_privileged() -> None:
    assert not any(key == "privileged" and value is True for key, value in walk(POD))
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert not SPEC.get(flag), flag
    assert SPEC["securityContext"]["runAsNonRoot"] is True
    assert SPEC["securityContext"]["runAsUser"] != 0
    assert SPEC.get("automountServiceAccountToken") is False, "the launcher never talks to the API server"
    for container in containers(SPEC):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
    assert LAUNCHER["command"] == ["qat-handler", "launcher"]


def python_for_anyone() -> str | None:
    """An interpreter a non-root uid may run (a venv under /root is out of its reach)."""
    for candidate in (Path(os.path.realpath(sys.executable)), Path("/usr/bin/python3").resolve()):
        if candidate.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in (candidate, *candidate.parents)):
            return str(candidate)
    return None


WRITE_HANDOFF = """
import sys
from pathlib import Path
from handler.ops.atomic_file import write_atomically
try:
    write_atomically(Path(sys.argv[1]) / "handoff.json", b"{}")
except PermissionError:
    sys.exit(3)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as kubelet and as the launcher's uid")
@pytest.mark.skipif(python_for_anyone() is None, reason="no Python interpreter that a non-root uid may run")
@pytest.mark.parametrize(("parent_mode", "writable"), [(SLOTS_MODE, True), (0o755, False)])
def test_a_non_root_launcher_can_write_its_slot_only_if_the_agent_opened_the_parent(
    parent_mode: int, writable: bool
) -> None:
    """Kubelet makes the slot for subPathExpr as root with the mode of <run-dir>/pods. The
    agent sets that to SLOTS_MODE (1733); a kubelet-made hostPath would be 0755."""
    uid = SPEC["securityContext"]["runAsUser"]
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        pods = Path(work) / "pods"
        pods.mkdir()
        os.chmod(pods, parent_mode)
        slot = pods / POD_UID
        slot.mkdir()
        os.chmod(slot, stat.S_IMODE(pods.stat().st_mode))  # as kubelet's SafeMakeDir does
        result = subprocess.run(
            [str(python_for_anyone()), "-c", WRITE_HANDOFF, str(slot)],
            user=uid,
            group=SPEC["securityContext"]["runAsGroup"],
            env={"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == (0 if writable else 3), result.stderr
        assert (slot / "handoff.json").exists() == writable
