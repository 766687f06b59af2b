"""R4, second property: a bad VMI among good ones never delays the good ones by more than one
reconcile.

Each example is a directory of good manifests (with env files) and one generated manifest
that the agent refuses (a near-valid manifest, a broken env file, or text that is no YAML),
read at once by a real bare-metal agent on ``test:///default`` with ONE worker, so every
reconcile is in one recorded sequence. For every good VMI: its first reconcile leaves it
Running, and at most one reconcile of the bad VMI comes before it.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.baremetal.manifest_entry import read_entry
from handler.baremetal.node import BareMetalNode
from handler.core.bdf import Bdf
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings
from tests.reliability.primitives import ugly_text
from tests.reliability.profiles import EXAMPLES, PROFILE, PROFILE_SETTINGS
from tests.reliability.strategies import near_valid_manifests

pytestmark = pytest.mark.fuzz

GOOD = 4
HOST = SimulatedHost(pfs=(SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=8),))
_runs = itertools.count()


@pytest.fixture(scope="module")
def keeper() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open("test:///default")  # keeps the test driver's state while nodes come and go
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def host_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qat-isolation-") as path:
        build_simulated_host(Path(path), HOST)
        yield Path(path)


def good_manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": {
                "memory": {"guest": "64Mi"},
                "devices": {"qats": [{"name": "qat0", "deviceName": "qat.intel.com/generic"}]},
            }
        },
    }


bad_inputs = st.one_of(
    near_valid_manifests().map(lambda doc: ("manifest", doc)),
    st.tuples(st.just("env"), ugly_text),
    st.tuples(st.just("text"), st.sampled_from(("{", "a: [", ":\n  - :", "\t\x00", "--- 1\n--- 2\n"))),
)


def record_reconciles(node: BareMetalNode, sequence: list[tuple[str, str | None]]) -> None:
    reconciler = node.reconciler
    original = reconciler.reconcile

    def recorded(key: str) -> Any:
        outcome = original(key)
        status = reconciler.sink.last_status(key)
        sequence.append((key, str(status.phase) if status else None))
        return outcome

    reconciler.reconcile = recorded  # type: ignore[method-assign]


@settings(PROFILE_SETTINGS, max_examples=EXAMPLES[PROFILE] // 40)
@given(bad=bad_inputs)
def test_a_bad_vmi_delays_the_good_ones_by_at_most_one_reconcile(
    keeper: libvirt.virConnect, host_root: Path, bad: tuple[str, Any]
) -> None:
    namespace = f"iso{next(_runs)}"
    with tempfile.TemporaryDirectory(prefix="qat-isolation-") as path:
        root = Path(path)
        vmi_dir, state = root / "vmis", root / "state"
        vmi_dir.mkdir()
        for index in range(GOOD):
            name = f"good-{index}"
            (vmi_dir / f"{name}.yaml").write_text(yaml.safe_dump(good_manifest(name, namespace)))
            (vmi_dir / f"{name}.env").write_text(f"QAT0=0000:3d:01.{index}\n")
        kind, value = bad
        bad_file = vmi_dir / "bad.yaml"
        if kind == "manifest":
            bad_file.write_text(yaml.safe_dump(value, allow_unicode=True))
        elif kind == "env":
            bad_file.write_text(yaml.safe_dump(good_manifest("bad", namespace)))
            (vmi_dir / "bad.env").write_text(f"QAT0=0000:3d:01.{GOOD}\n{value}=\n{value}\n")
        else:
            bad_file.write_text(value)
        entry = read_entry(bad_file, None)
        if entry.desired.blocked is None:
            return  # the mutation happened to leave a valid VMI: nothing bad to isolate
        node = BareMetalNode(
            AgentSettings(
                connect="test:///default",
                vmi_dir=vmi_dir,
                state_dir=state,
                host_root=host_root,
                render=RenderSettings(domain_type="kvm", log_dir=str(state / "logs"), templates=load_templates()),
                workers=1,
            ),
            FreshDeviceChecks(host_root),
        )
        sequence: list[tuple[str, str | None]] = []
        record_reconciles(node, sequence)
        node.start()
        try:
            assert node.wait_synced(60), "the agent did not finish its first pass"
        finally:
            node.shutdown(StopPolicy.KEEP)
            for dom in keeper.listAllDomains(0):
                if dom.name().startswith(f"{namespace}_"):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
    bad_key = entry.key
    for index in range(GOOD):
        key = f"{namespace}/good-{index}"
        first = next(i for i, (k, _) in enumerate(sequence) if k == key)
        assert sequence[first][1] == "Running", f"{key} is {sequence[first][1]} after its first reconcile: {sequence}"
        before = sum(1 for k, _ in sequence[:first] if k == bad_key)
        assert before <= 1, f"{bad_key} was reconciled {before} times before {key}: {sequence}"
