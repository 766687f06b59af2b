"""The nested test's L1 guest, and its stage timings in the terminal summary and a results file."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.nested.initramfs import write_l2_initrd
from tests.support.nested.l1 import L1Guest, missing_capabilities, shares_for
from tests.support.nested.node import NestedNode
from tests.support.nested.packages import MissingFeature, ensure_parts
from tests.support.nested.packages import root as nested_cache

CHECKOUT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "QAT_HANDLER_NESTED_RESULTS"
RECORDED_RESULTS = CHECKOUT / "bench" / "results" / "nested_vfio.json"
"""The run quoted in docs/benchmarks.md; a run writes there only when asked, so a checkout stays clean."""
KEEP_ENV = "QAT_HANDLER_NESTED_KEEP"
L1_BOOT_TIMEOUT = 600.0
TIMINGS = pytest.StashKey[dict[str, float]]()
PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[PASSED] = report.passed
    return report


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    """Stage name -> seconds; shown after every run, written to the results file after a pass."""
    found: dict[str, float] = {}
    request.config.stash[TIMINGS] = found
    started = time.monotonic()
    yield found
    found["whole test"] = time.monotonic() - started
    if request.node.stash.get(PASSED, False):
        _write_results(found)


@pytest.fixture
def nested_node(timings: dict[str, float]) -> Iterator[NestedNode]:
    """L1 booted with its command channel up; powered off afterwards (work dir kept on failure)."""
    if os.geteuid() != 0:
        pytest.skip("nested VFIO test: needs root (run it through tests/run.sh)")
    missing = missing_capabilities()
    if missing is not None:
        pytest.skip(f"nested VFIO impossible here: {missing}")
    try:
        parts = ensure_parts()
    except MissingFeature as error:
        pytest.skip(f"nested VFIO impossible here: {error}")
    work = Path(tempfile.mkdtemp(prefix="qat-handler-nested-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    shutil.copy(parts.l2_kernel, work / "l2-vmlinuz")
    write_l2_initrd(parts, work / "l2-initrd.cpio.gz", nested_cache())
    venv = Path(sys.prefix)
    shares = shares_for(CHECKOUT, venv, Path(sys.base_prefix), work)
    l1 = L1Guest(parts, work, shares)
    node = NestedNode(l1, venv, work / "l2-vmlinuz", work / "l2-initrd.cpio.gz")
    passed = False
    try:
        timings["L1 boot"] = l1.wait_ready(L1_BOOT_TIMEOUT)
        yield node
        passed = True
    finally:
        if not passed and l1.proc.poll() is None:
            node.save_logs()
        l1.power_off()
        if passed and not os.environ.get(KEEP_ENV):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"\nnested test work directory kept: {work}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    found = config.stash.get(TIMINGS, None)
    if not found:
        return
    terminalreporter.section("nested VFIO stage timings (s)")
    for stage, seconds in found.items():
        terminalreporter.line(f"{stage:<58} {seconds:8.1f}")


def _write_results(found: dict[str, float]) -> None:
    path = Path(os.environ.get(RESULTS_ENV) or nested_cache() / "nested_vfio.json")
    document = {
        "test": "tests/nested/test_nested_vfio.py",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "kernel": platform.release()},
        "load average at the end (1, 5, 15 min)": [round(x, 1) for x in os.getloadavg()],
        "seconds": {stage: round(seconds, 2) for stage, seconds in found.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
