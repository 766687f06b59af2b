"""R4: generated VMI manifests, env files and handoffs, through the same code the agent runs.

For each generated manifest (plus, sometimes, an env file beside it) written to a file and
read back by the bare-metal reader, either:

* the VMI is accepted, and its domain XML validates against libvirt's own RNG, every user
  string reads back unchanged from it (and from libvirt's copy after defining it on
  ``test:///default``), and the serial log stays in the state directory; or
* it is refused with exactly one line that names a place in the input.

Anything else (a traceback, an XML the schema or libvirt rejects, a string that changed on
the way) fails with hypothesis's minimal example and the seed that reproduces it.

Example counts come from the hypothesis profile: ``ci`` (the default, 1,000 manifests) or
``long`` (10,000; ``QAT_HANDLER_FUZZ=long``, run by ``bench/chaos.py``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from handler.baremetal.manifest_entry import read_entry
from handler.core.bdf import Bdf
from handler.core.device_env import AssignedDevice
from handler.core.domain_xml import render_domain
from handler.core.handoff import handoff_from_json, handoff_to_json
from handler.core.refusal import Refused
from handler.core.render_settings import RenderSettings
from handler.core.vmi import VMI
from handler.core.vmi_schema import leaf_paths, node_at
from handler.host.domain_templates import load_templates
from tests.reliability import domain_checks
from tests.reliability.profiles import EXAMPLES, PROFILE, PROFILE_SETTINGS, SMALL_SETTINGS
from tests.reliability.side_inputs import env_texts, handoff_documents
from tests.reliability.strategies import manifests, valid_manifests

pytestmark = pytest.mark.fuzz

STATE_DIR = Path("/var/lib/qat-handler-fuzz")
SETTINGS = RenderSettings(
    domain_type="kvm", log_dir=str(STATE_DIR / "logs"), owner=str(STATE_DIR), templates=load_templates()
)
tally: Counter[str] = Counter()
HANG_SECONDS = 20.0
"""Reading or rendering one manifest takes milliseconds; this long means it hangs."""


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail (with hypothesis's example) instead of hanging the suite."""

    def hung(_signum: int, _frame: Any) -> None:
        raise AssertionError(f"still busy after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def conn() -> Iterator[libvirt.virConnect]:
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qat-fuzz-") as path:
        yield Path(path)


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    tally.clear()
    domain_checks.domain_schema()  # load once, before the clock of the first example
    yield
    print(f"\nR4 ({PROFILE} profile, {EXAMPLES[PROFILE]} examples per property); outcomes:")
    for outcome, count in sorted(tally.items()):
        print(f"  {count:6d}  {outcome}")


def write_input(workdir: Path, document: Any, env_text: str | None, as_json: bool) -> Path:
    for stale in workdir.iterdir():
        stale.unlink()
    manifest = workdir / ("vm.json" if as_json else "vm.yaml")
    if as_json:
        manifest.write_text(json.dumps(document), encoding="utf-8")
    else:
        manifest.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    if env_text is not None:
        manifest.with_suffix(".env").write_text(env_text, encoding="utf-8")
    return manifest


def allocated(vmi: VMI) -> tuple[AssignedDevice, ...]:
    """What the allocator would hand out when there is no env file: distinct VFs, in order."""
    return tuple(
        AssignedDevice(request.name, request.resource, Bdf(0, 0x3D, 1 + i // 8, i % 8), "allocator")
        for i, request in enumerate(vmi.devices)
    )


@st.composite
def manifest_inputs(draw: st.DrawFn) -> tuple[Any, str | None, bool]:
    document = draw(manifests)
    return document, draw(env_texts(document)), draw(st.booleans())


@PROFILE_SETTINGS
@given(manifest_inputs())
def test_a_generated_manifest_becomes_a_valid_domain_or_one_line_naming_a_field(
    conn: libvirt.virConnect, workdir: Path, case: tuple[Any, str | None, bool]
) -> None:
    document, env_text, as_json = case
    path = write_input(workdir, document, env_text, as_json)
    with bounded(HANG_SECONDS):
        entry = read_entry(path, None)  # must not raise: the agent's directory source calls exactly this
    desired = entry.desired
    if desired.blocked is not None:
        names = (path.name, path.with_suffix(".env").name)
        tally["refused: " + domain_checks.check_refusal(desired.blocked, document, env_text, names)] += 1
        return
    assert desired.vmi is not None
    devices = allocated(desired.vmi) if desired.allocate else desired.devices
    with bounded(HANG_SECONDS):
        xml = render_domain(desired.vmi, devices, SETTINGS)
    domain_checks.check_domain(xml, desired.vmi, devices, SETTINGS)
    domain_checks.check_defines(conn, xml, desired.vmi, devices)
    tally["accepted" + (" (kernel boot)" if desired.vmi.kernel_boot else "")] += 1


@SMALL_SETTINGS
@given(handoff_documents())
def test_a_generated_handoff_parses_or_is_refused_in_one_line(document: Any) -> None:
    try:
        handoff = handoff_from_json(document, "handoff.json")
    except Refused as refused:
        line = refused.refusal.line()
        assert len(line.splitlines()) == 1, f"not one line: {line!r}"
        assert refused.refusal.subject.startswith("handoff.json"), line
        tally["handoff refused: " + refused.refusal.subject] += 1
        return
    again = handoff_from_json(json.loads(json.dumps(handoff_to_json(handoff))), "handoff.json")
    assert again == handoff, "a handoff does not survive being written and read back"
    tally["handoff accepted"] += 1


def test_the_generator_sets_every_field_of_the_schema() -> None:
    """A field added to handler/core/vmi_schema.py without a strategy here fails this test."""
    seen: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        seen.add(prefix)
        if isinstance(node, dict):
            is_map = prefix in MAP_PATHS
            for key, value in node.items():
                walk(value, f"{prefix}[]" if is_map else f"{prefix}.{key}")
        elif isinstance(node, list):
            for value in node:
                walk(value, f"{prefix}[]")

    wanted = set(leaf_paths())

    class AllSeen(Exception):
        pass

    # Up to 4,000 examples, stopping at the first that completes the set: rare combinations
    # (a config drive with base64 network data) must not depend on how many examples luck needs.
    @settings(
        max_examples=4000,
        database=None,
        deadline=None,
        derandomize=True,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(valid_manifests())
    def collect(document: dict[str, Any]) -> None:
        walk(document["spec"], "spec")
        if wanted <= seen:
            raise AllSeen

    with contextlib.suppress(AllSeen):
        collect()
    missing = [path for path in leaf_paths() if path not in seen]
    assert not missing, f"never generated: {missing}"


MAP_PATHS = frozenset(path for path in leaf_paths() if node_at(path).kind == "map")
