"""Every manifest under deploy/ is valid for a current Kubernetes (kubernetes-validate,
strict), or, for KubeVirt's own kinds, for the agent's parser; the kustomization installs
every manifest; images are named without a registry host."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from packaging.version import Version

from handler import __version__
from handler.core.vmi_parse import parse_vmi
from tests.deploy.manifests import DEPLOY, Doc, containers, load_all, manifest_paths, one, pod_spec

KUBE_VERSION = latest_version()
"""The newest Kubernetes whose schemas the installed kubernetes-validate ships."""
OLDEST_CURRENT = Version("1.31")

KUSTOMIZATION = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
COMPONENT = ("kustomize.config.k8s.io/v1alpha1", "Component")
"""Opt-in kustomize components under deploy/components/, built (and so checked) by the tests below."""
EXAMPLE_VMI_UID = "6f1c1c9e-4e55-4a8b-9f7e-6c2b0a7d0001"
"""A VMI's uid is given by the API server; the example carries none, so parse_vmi gets this one."""
CUSTOM_KINDS = {("kubevirt.io/v1", "VirtualMachineInstance")}
"""Kinds that no core schema covers; each is checked by the agent's own parser instead."""
IMAGE = f"qat-handler:{__version__}"
INSTALLED_KINDS = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "DaemonSet",
    "CustomResourceDefinition",
    "Deployment",
    "Service",
    "ValidatingWebhookConfiguration",
)
INSTALLED_DIRS = (DEPLOY, DEPLOY / "crds")
"""Folders whose every manifest `kubectl apply -k deploy/` installs."""

DOCS = load_all()


def core(doc: Doc) -> bool:
    return (doc.api_version, doc.kind) not in CUSTOM_KINDS | {KUSTOMIZATION, COMPONENT}


def test_deploy_has_the_expected_manifests() -> None:
    kinds = {(d.kind, d.path.relative_to(DEPLOY).parts[0] == "examples") for d in DOCS}
    for kind in INSTALLED_KINDS:
        assert (kind, False) in kinds, f"deploy/ has no {kind}"
    for kind in ("ConfigMap", "VirtualMachineInstance", "Pod"):
        assert (kind, True) in kinds, f"deploy/examples/ has no {kind}"


def test_the_validator_knows_a_current_kubernetes() -> None:
    assert Version(KUBE_VERSION) >= OLDEST_CURRENT, f"kubernetes-validate ships schemas only up to {KUBE_VERSION}"


@pytest.mark.parametrize("doc", [d for d in DOCS if core(d)], ids=lambda d: d.label)
def test_manifest_validates_strictly(doc: Doc) -> None:
    kubernetes_validate.validate(doc.body, KUBE_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field_and_a_wrong_type() -> None:
    daemonset = one("DaemonSet").body
    misspelt = copy.deepcopy(daemonset)
    misspelt["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    wrong_type = copy.deepcopy(daemonset)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("doc", [d for d in DOCS if not core(d)], ids=lambda d: d.label)
def test_non_core_document_is_a_known_kind(doc: Doc) -> None:
    """No document escapes checking: each is core, a KubeVirt kind we parse, or the kustomization."""
    assert (doc.api_version, doc.kind) in CUSTOM_KINDS | {KUSTOMIZATION, COMPONENT}
    if (doc.api_version, doc.kind) == KUSTOMIZATION:
        assert doc.path == DEPLOY / "kustomization.yaml"
    if (doc.api_version, doc.kind) == COMPONENT:
        assert doc.path.parent.parent == DEPLOY / "components"


@pytest.mark.parametrize("doc", [d for d in DOCS if (d.api_version, d.kind) in CUSTOM_KINDS], ids=lambda d: d.label)
def test_vmi_parses_with_the_agents_parser(doc: Doc) -> None:
    vmi = parse_vmi(doc.body, default_uid=EXAMPLE_VMI_UID)
    assert not vmi.node_name, "the controller labels a VMI with its node once the pod is scheduled; never by hand"
    assert vmi.devices, "the example VMI asks for no QAT device"
    assert "uid" not in doc.body["metadata"], "the API server assigns a VMI's uid; an example must not set one"


def test_the_parser_check_can_fail() -> None:
    vmi = copy.deepcopy(one("VirtualMachineInstance").body)
    vmi["spec"]["domain"]["devices"]["qats"][0]["deviceName"] = "not a resource"
    with pytest.raises(Exception, match="deviceName"):
        parse_vmi(vmi, default_uid=EXAMPLE_VMI_UID)


# -- the kustomization ---------------------------------------------------------------------


def kustomization() -> dict[str, object]:
    body = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert isinstance(body, dict)
    return body


def test_kustomization_lists_every_manifest_and_no_example() -> None:
    listed = kustomization().get("resources") or []
    assert isinstance(listed, list)
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    manifests = {
        str(p.relative_to(DEPLOY))
        for p in manifest_paths()
        if p.parent in INSTALLED_DIRS and p.name != "kustomization.yaml"
    }
    assert set(listed) == manifests, "deploy/kustomization.yaml resources must be exactly deploy/*.yaml and crds/*.yaml"
    assert not any(str(p).startswith("examples") for p in listed)


def test_kustomization_sets_no_namespace() -> None:
    """A kustomize `namespace:` would move the Role out of KubeVirt's namespace."""
    assert "namespace" not in kustomization()


def test_images_name_no_registry_host_and_match_the_version() -> None:
    images = [
        (d.label, c["image"])
        for d in DOCS
        if d.kind in ("DaemonSet", "Deployment", "Pod")
        for c in containers(pod_spec(d))
    ]
    assert images
    for where, image in images:
        assert image == IMAGE, f"{where}: image {image!r}, expected {IMAGE!r} (no registry host; kustomize overrides)"
    entries = kustomization().get("images") or []
    assert entries == [{"name": "qat-handler", "newName": "qat-handler", "newTag": __version__}]


def test_no_registry_host_in_the_manifests_or_the_readme() -> None:
    image_ref = re.compile(r"(?:[\w-]+(?:\.[\w-]+)+(?::\d+)?|[\w-]+:\d+)/[\w./-]*qat-handler:[\w.-]+")
    for path in [*manifest_paths(), DEPLOY / "README.md"]:
        match = image_ref.search(path.read_text(encoding="utf-8"))
        assert match is None, f"{path} names a registry host: {match.group(0) if match else ''}"


# -- kustomize itself, where kubectl is installed ------------------------------------------

KUBECTL = shutil.which("kubectl")


def kustomize(directory: Path) -> list[dict[str, object]]:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_kustomize_build_validates() -> None:
    built = kustomize(DEPLOY)
    assert sorted(str(d["kind"]) for d in built) == sorted(
        d.kind for d in DOCS if d.path.parent in INSTALLED_DIRS and core(d)
    )
    for body in built:
        kubernetes_validate.validate(body, KUBE_VERSION, strict=True)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_an_overlay_repoints_every_image(tmp_path: Path) -> None:
    """The overlay deploy/README.md tells operators to write, applied: every container and the
    controller's launcher image follow it."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    overlay = readme.split("cat > overlay/kustomization.yaml <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    overlay = overlay.replace("../deploy", os.path.relpath(DEPLOY, tmp_path))  # kustomize refuses absolute paths
    (tmp_path / "kustomization.yaml").write_text(overlay.replace("REGISTRY/", "mirror/"))
    built = kustomize(tmp_path)
    workloads = [d for d in built if d["kind"] in ("DaemonSet", "Deployment")]
    assert len(workloads) >= 3
    for workload in workloads:
        spec = workload["spec"]["template"]["spec"]  # type: ignore[index]
        assert {c["image"] for c in containers(spec)} == {"mirror/qat-handler:0.1.0"}
    (controller,) = [d for d in workloads if d["metadata"]["name"] == "qat-handler-controller"]  # type: ignore[index]
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]
    assert "--launcher-image=mirror/qat-handler:0.1.0" in args


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_the_container_disk_component_adds_only_host_proc_and_ptrace_to_the_agent(tmp_path: Path) -> None:
    """The overlay deploy/README.md shows for containerDisks in Kubernetes, built as written."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    overlay = readme.split("cat > with-disks/kustomization.yaml <<'EOF'\n", 1)[1].split("\n  EOF\n", 1)[0]
    overlay = "\n".join(line.removeprefix("  ") for line in overlay.splitlines())
    relative = os.path.relpath(DEPLOY, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(overlay.replace("../deploy", relative))
    plain = {str(d["metadata"]["name"]): d for d in kustomize(DEPLOY) if d["kind"] == "DaemonSet"}  # type: ignore[index]
    built = kustomize(tmp_path)
    for body in built:
        kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
    (agent,) = [d for d in built if d["kind"] == "DaemonSet"]
    spec = agent["spec"]["template"]["spec"]  # type: ignore[index]
    before = plain[str(agent["metadata"]["name"])]["spec"]["template"]["spec"]  # type: ignore[index]
    (container,) = spec["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert {"name": "host-proc", "mountPath": "/host/proc", "readOnly": True} in container["volumeMounts"]
    assert {"name": "host-proc", "hostPath": {"path": "/proc", "type": "Directory"}} in spec["volumes"]
    assert len(spec["volumes"]) == len(before["volumes"]) + 1
    assert "--host-root=/host" in container["args"]
    others = [d for d in built if d["kind"] != "DaemonSet"]
    assert len(others) == len(kustomize(DEPLOY)) - 1
