"""The real kubectl against the fake API server: the generated CRD applied from deploy/crds/, then
VMIs applied, listed with the CRD's printer columns, and deleted, as on a cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.kube.event_recorder import EventRecorder
from tests.support.fakekube import FakeApiServer

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture
def fake_apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server
        assert not server.internal_errors


def test_kubectl_shows_the_crds_printer_columns(fake_apiserver: FakeApiServer, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(fake_apiserver.write_kubeconfig(tmp_path / "kubeconfig"))}

    def kubectl(*args: str) -> str:
        assert KUBECTL is not None
        done = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "created" in kubectl("apply", "-f", "deploy/crds/virtualmachineinstances.kubevirt.io.yaml")
    assert "vmi-qat created" in kubectl("apply", "-f", "deploy/examples/vmi-qat.yaml")
    vmi = fake_apiserver.get_object("virtualmachineinstances", "default", "vmi-qat")
    assert vmi is not None
    status = {
        "phase": "Running",
        "nodeName": "node01",
        "conditions": [{"type": "Synchronized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "interfaces": [{"ipAddress": "10.0.0.5"}],
    }
    fake_apiserver.put_object({**vmi, "status": status})
    header, row = kubectl("get", "vmis", "-A").splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
    assert row.split()[:2] == ["default", "vmi-qat"] and row.split()[3:] == ["Running", "10.0.0.5", "node01", "True"]
    assert "deleted" in kubectl("delete", "vmi", "vmi-qat")
    assert fake_apiserver.get_object("virtualmachineinstances", "default", "vmi-qat") is None


def test_kubectl_describe_lists_one_seconds_events_in_the_order_they_happened(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    """Event times have whole seconds, and kubectl sorts by them, keeping the list order for a tie.
    The API server lists by name, so Events are named as client-go names them: the object's name
    and the time in nanoseconds. With random names, a guest's "Stopped" showed before its "ShuttingDown"."""
    env = {**os.environ, "KUBECONFIG": str(fake_apiserver.write_kubeconfig(tmp_path / "kubeconfig"))}
    assert KUBECTL is not None
    subprocess.run([KUBECTL, "apply", "-f", "deploy/examples/vmi-qat.yaml"], env=env, cwd=REPO, check=True)
    vmi = fake_apiserver.get_object("virtualmachineinstances", "default", "vmi-qat")
    recorder = EventRecorder(fake_apiserver.api_client(), "node01")
    story = ["Created", "Started", "ShuttingDown", "Stopped", "Deleted", "Again", "More", "Last"]
    for reason in story:
        recorder.record(vmi, reason, f"{reason} happened", warning=False)
    described = subprocess.run(
        [KUBECTL, "describe", "vmi", "vmi-qat"], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    events = described.split("Events:", 1)[1].splitlines()[3:]
    assert [line.split()[1] for line in events if line.strip()] == story, described
