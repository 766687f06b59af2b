"""Fixtures shared by the real-guest network and console tests: a workspace and agents that
are killed, with this process's domains removed, when the test ends."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.agent_harness import AgentProcess, Workspace, sweep_domains

StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def ws() -> Iterator[Workspace]:
    workspace = Workspace.create()
    yield workspace
    shutil.rmtree(workspace.root, ignore_errors=True)


@pytest.fixture
def agents(ws: Workspace, libvirt_conn: Any) -> Iterator[StartAgent]:
    started: list[AgentProcess] = []

    def start(*extra: str, on_stop: str = "shutdown") -> AgentProcess:
        agent = AgentProcess(ws, *extra, on_stop=on_stop)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.kill()
        sweep_domains(libvirt_conn)


def manifest_uid(ws: Workspace, vmi_name: str) -> str:
    return str(json.loads(ws.manifest_path(vmi_name).read_text())["metadata"]["uid"])
