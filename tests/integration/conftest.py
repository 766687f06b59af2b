"""Fixtures for tests against a real libvirtd on qemu:///system.

A test marked ``@pytest.mark.libvirtd`` gets the daemons started for it (once per session);
``libvirt_conn`` is a session-wide connection to qemu:///system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.libvirtd import LIBVIRT_URI, LibvirtdStatus, ensure_libvirtd


@pytest.fixture(scope="session")
def libvirtd() -> LibvirtdStatus:
    """virtlogd and libvirtd running and answering on qemu:///system (started if needed)."""
    return ensure_libvirtd()


@pytest.fixture(autouse=True)
def _libvirtd_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("libvirtd") is not None:
        request.getfixturevalue("libvirtd")


@pytest.fixture(scope="session")
def libvirt_conn(libvirtd: LibvirtdStatus) -> Iterator[Any]:
    import libvirt

    conn = libvirt.open(LIBVIRT_URI)
    try:
        yield conn
    finally:
        conn.close()
