"""The real ``kubectl`` against the fake API server, which calls the real ``qat-handler webhook``
over HTTPS as kube-apiserver does: the webhook configuration from deploy/webhook.yaml, its
caBundle from the TLS keeper, VMIs from deploy/examples."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from handler.core.feature_gates import GATE_OFF_MESSAGE
from tests.support.fakekube import FakeApiServer
from tests.webhook.support import REPO, TLS, Webhook, issue_certificates, wait_until, webhook_process

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
EXAMPLES = REPO / "deploy" / "examples"
WEBHOOK_NAME = "virtualmachineinstances.qat-handler.io"


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run([KUBECTL, *args], env=self.env, capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Kubectl, Webhook]]:
    with FakeApiServer(bookmark_interval=0.2) as server:
        kubectl = Kubectl(server.write_kubeconfig(tmp_path / "kubeconfig"))
        configuration = tmp_path / "validatingwebhookconfiguration.yaml"
        docs = yaml.safe_load_all((REPO / "deploy" / "webhook.yaml").read_text())
        configuration.write_text(yaml.safe_dump(next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")))
        registered = kubectl("apply", "-f", str(configuration))
        assert registered.returncode == 0, registered.stderr
        ca = issue_certificates(server)  # the controller's part: Secrets and caBundle
        with webhook_process(server, tmp_path) as webhook:
            server.route_service(TLS.namespace, TLS.service, 443, ("127.0.0.1", webhook.port))
            wait_until(lambda: webhook.ready(ca), "the webhook becoming ready")
            yield server, kubectl, webhook
        assert not server.internal_errors


def test_apply_is_denied_with_the_seeds_message_until_the_gate_is_on(
    cluster: tuple[FakeApiServer, Kubectl, Webhook],
) -> None:
    server, kubectl, _ = cluster
    denied = kubectl("apply", "-f", "deploy/examples/vmi-qat.yaml")
    assert denied.returncode != 0
    # kubectl prints an Invalid status by its causes, naming the object, as it does for any webhook.
    assert denied.stderr.strip() == (
        f'The VirtualMachineInstance "vmi-qat" is invalid: spec.domain.devices.qats: {GATE_OFF_MESSAGE}'
    )
    assert server.get_object("virtualmachineinstances", "default", "vmi-qat") is None
    review = server.admission_reviews[-1]["request"]
    assert (review["operation"], review["kind"]["kind"], review["object"]["metadata"]["name"]) == (
        "CREATE",
        "VirtualMachineInstance",
        "vmi-qat",
    )

    gate = kubectl("apply", "-f", "deploy/examples/kubevirt-config.yaml")
    assert gate.returncode == 0, gate.stderr
    wait_until(lambda: kubectl("apply", "-f", "deploy/examples/vmi-qat.yaml").returncode == 0, "the VMI admitted")
    listed = kubectl("get", "vmi", "vmi-qat", "-o", "name")
    assert listed.stdout.strip() == "virtualmachineinstance.kubevirt.io/vmi-qat"


def test_a_v1alpha3_vmi_goes_through_the_same_webhook(
    cluster: tuple[FakeApiServer, Kubectl, Webhook], tmp_path: Path
) -> None:
    server, kubectl, _ = cluster
    old = yaml.safe_load((EXAMPLES / "vmi-qat.yaml").read_text())
    old["apiVersion"] = "kubevirt.io/v1alpha3"
    old["spec"]["domain"]["devices"]["qats"][0]["deviceName"] = "not a resource"
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    denied = kubectl("apply", "-f", str(path))
    assert "spec.domain.devices.qats[0].deviceName 'not a resource' is not a resource name" in denied.stderr
    assert server.admission_reviews[-1]["request"]["kind"]["version"] == "v1alpha3"


def test_the_spec_cannot_be_changed_but_labels_can(
    cluster: tuple[FakeApiServer, Kubectl, Webhook], tmp_path: Path
) -> None:
    _, kubectl, _ = cluster
    assert kubectl("apply", "-f", "deploy/examples/kubevirt-config.yaml").returncode == 0
    wait_until(lambda: kubectl("apply", "-f", "deploy/examples/vmi-qat.yaml").returncode == 0, "the VMI admitted")
    changed = yaml.safe_load((EXAMPLES / "vmi-qat.yaml").read_text())
    changed["spec"]["domain"]["memory"]["guest"] = "2Gi"
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    refused = kubectl("apply", "-f", str(path))
    assert refused.returncode != 0
    assert "spec of a VMI cannot be changed after it is created" in refused.stderr
    assert "fix: delete the VMI and create it again" in refused.stderr
    assert kubectl("label", "vmi", "vmi-qat", "team=edge").returncode == 0
    assert kubectl("delete", "-f", "deploy/examples/vmi-qat.yaml").returncode == 0


def test_with_the_webhook_down_writes_fail_closed(cluster: tuple[FakeApiServer, Kubectl, Webhook]) -> None:
    server, kubectl, webhook = cluster
    webhook.process.terminate()
    webhook.process.wait(timeout=20)
    failed = kubectl("apply", "-f", "deploy/examples/vmi-qat.yaml")
    assert failed.returncode != 0
    assert f'failed calling webhook "{WEBHOOK_NAME}"' in failed.stderr
    assert server.get_object("virtualmachineinstances", "default", "vmi-qat") is None


def test_a_vmi_on_the_pod_network_is_refused_at_apply(
    cluster: tuple[FakeApiServer, Kubectl, Webhook], tmp_path: Path
) -> None:
    """The README's networking example as KubeVirt users write it (masquerade on the pod network):
    no node here can give it, so kubectl says so instead of a pod holding a VF for nothing."""
    server, kubectl, _ = cluster
    vmi = yaml.safe_load((EXAMPLES / "vmi-qat.yaml").read_text())
    vmi["spec"]["networks"] = [{"name": "default", "pod": {}}]
    vmi["spec"]["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}}]
    path = tmp_path / "pod-network.yaml"
    path.write_text(yaml.safe_dump(vmi))
    denied = kubectl("apply", "-f", str(path))
    assert denied.returncode != 0
    assert "spec.networks[0].pod cannot be given in Kubernetes" in denied.stderr, denied.stderr
    assert "fix: use a multus network" in denied.stderr
    assert server.get_object("virtualmachineinstances", "default", "vmi-qat") is None
