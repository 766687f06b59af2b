"""The fake API server every controller test talks to, checked for internal errors afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakekube import FakeApiServer


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.5) as fake:
        yield fake
        assert not fake.internal_errors
