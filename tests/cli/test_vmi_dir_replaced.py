"""The manifest directory replaced under a running agent, as configuration tools do it, typed
as a shell would: a new directory swapped in by two renames, and a symlinked --vmi-dir
re-pointed. The agent reads what the name leads to now: guests whose manifests left are
stopped, new ones start, and those in both keep running untouched. A symlinked --vmi-dir is
watched through the link (a file copied into its target is seen at once).

The real CLI on libvirt's test driver and a simulated host.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.bare_agent import BareAgent, manifest, write_manifests


@pytest.fixture
def agents() -> Iterator[list[BareAgent]]:
    started: list[BareAgent] = []
    yield started
    for agent in started:
        agent.stop()


def sh(command: str, cwd: Path) -> None:
    subprocess.run(["sh", "-ec", command], cwd=cwd, check=True)


def test_a_directory_swapped_in_by_two_renames_is_read_again(tmp_path: Path, agents: list[BareAgent]) -> None:
    write_manifests(tmp_path / "vmis", "kept", "removed")
    agents.append(agent := BareAgent(tmp_path, tmp_path / "vmis"))
    agent.wait_phases({"edge/kept": "Running", "edge/removed": "Running"}, "the first two VMIs")
    write_manifests(tmp_path / "vmis.new", "kept", "added")
    sh("mv vmis vmis.old && mv vmis.new vmis", cwd=tmp_path)
    agent.wait_phases({"edge/kept": "Running", "edge/added": "Running"}, "the swapped-in directory's VMIs")
    agent.stop()
    records = agent.records()
    assert any(r["event"] == "VMI directory replaced; reading it again" for r in records)
    kept = [r for r in records if r.get("vmi") == "edge/kept"]
    assert [r["reason"] for r in kept if r.get("reason") in ("Started", "ShuttingDown", "Stopped")] == ["Started"]
    removed = [r["reason"] for r in records if r.get("vmi") == "edge/removed" and "reason" in r]
    assert "ShuttingDown" in removed, removed


def test_a_symlinked_vmi_dir_is_watched_through_the_link_and_followed_when_re_pointed(
    tmp_path: Path, agents: list[BareAgent]
) -> None:
    write_manifests(tmp_path / "release-1", "kept", "removed")
    (tmp_path / "vmis").symlink_to("release-1")
    agents.append(agent := BareAgent(tmp_path, tmp_path / "vmis"))
    agent.wait_phases({"edge/kept": "Running", "edge/removed": "Running"}, "the first two VMIs")
    (tmp_path / "release-1" / "copied.yaml").write_text(manifest("copied"))
    agent.wait_phases(
        {"edge/kept": "Running", "edge/removed": "Running", "edge/copied": "Running"},
        "a manifest copied into the link's target",
    )
    write_manifests(tmp_path / "release-2", "kept", "added")
    sh("ln -s release-2 vmis.next && mv -T vmis.next vmis", cwd=tmp_path)
    agent.wait_phases({"edge/kept": "Running", "edge/added": "Running"}, "the re-pointed link's VMIs")
