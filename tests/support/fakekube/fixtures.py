"""pytest fixtures. Import them into a conftest.py (or a test module) to use them:

from tests.support.fakekube.fixtures import fake_apiserver, fake_apiserver_factory  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .server import FakeApiServer


@pytest.fixture
def fake_apiserver() -> Iterator[FakeApiServer]:
    """A started server with default settings (no VMI status subresource, 1 s bookmarks)."""
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def fake_apiserver_factory() -> Iterator[Callable[..., FakeApiServer]]:
    """``factory(**FakeApiServer kwargs)`` -> a started server; all are stopped at teardown."""
    servers: list[FakeApiServer] = []

    def start(**kwargs: Any) -> FakeApiServer:
        server = FakeApiServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
