"""Golden launcher pods: a VMI manifest in, the pod the controller creates for it out.

Each case in ``tests/data/golden/pods`` is ``<case>.vmi.yaml`` and ``<case>.pod.yaml``, the
expected pod. They are compared as parsed YAML, so layout and comments do not matter.
``deploy/examples/launcher-pod.yaml`` is the golden output for ``deploy/examples/vmi-qat.yaml``.

To regenerate the expected files after an intended change, run::

    REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/core/test_golden_launcher_pods.py

then review the diff under tests/data/golden/pods before committing it (the example in
deploy/examples keeps its comments and is never rewritten: fix it by hand).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from handler.core.launcher_pod import LauncherPodSettings, render_launcher_pod
from handler.core.refusal import Refused

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "pods"
REPO = Path(__file__).resolve().parents[2]
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
SETTINGS = LauncherPodSettings(image="qat-handler:0.1.0")
EXAMPLE_UID = "6f1c1c9e-4e55-4a8b-9f7e-6c2b0a7d0001"
CASES = sorted(p.name.removesuffix(".vmi.yaml") for p in GOLDEN.glob("*.vmi.yaml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_cases_are_there() -> None:
    assert CASES == ["container-disk", "one-qat", "qats-and-hostdevices", "scheduling", "two-qats-one-name"]


@pytest.mark.parametrize("case", CASES)
def test_rendered_pod_matches_golden(case: str) -> None:
    pod = render_launcher_pod(load(GOLDEN / f"{case}.vmi.yaml"), SETTINGS)
    expected_path = GOLDEN / f"{case}.pod.yaml"
    if REGENERATE:
        expected_path.write_text(yaml.safe_dump(pod, sort_keys=False), encoding="utf-8")
    assert pod == load(expected_path)


def test_the_example_launcher_pod_is_what_the_controller_renders_for_the_example_vmi() -> None:
    vmi = load(REPO / "deploy" / "examples" / "vmi-qat.yaml")
    vmi["metadata"]["uid"] = EXAMPLE_UID
    assert render_launcher_pod(vmi, SETTINGS) == load(REPO / "deploy" / "examples" / "launcher-pod.yaml")


def test_resources_are_summed_per_name_and_requests_equal_limits() -> None:
    pod = render_launcher_pod(load(GOLDEN / "qats-and-hostdevices.vmi.yaml"), SETTINGS)
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["qat.intel.com/cy"] == "2"
    assert resources["limits"]["qat.intel.com/dc"] == "1"
    assert resources["limits"]["intel.com/qat_vf"] == "1"


def test_the_image_comes_from_the_settings() -> None:
    pod = render_launcher_pod(load(GOLDEN / "one-qat.vmi.yaml"), LauncherPodSettings(image="example/qat:9"))
    assert pod["spec"]["containers"][0]["image"] == "example/qat:9"


def test_a_vmi_the_stack_refuses_gets_no_pod() -> None:
    vmi = load(GOLDEN / "one-qat.vmi.yaml")
    vmi["spec"]["domain"]["devices"]["qats"][0]["deviceName"] = "no slash"
    with pytest.raises(Refused, match="deviceName"):
        render_launcher_pod(vmi, SETTINGS)
