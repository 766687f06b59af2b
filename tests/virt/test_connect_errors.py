"""A failed connect is one line whose fix fits the failure: no daemon, or a daemon that refused us."""

from __future__ import annotations

import libvirt
import pytest

from handler.virt.errors import ErrorKind, connect_failed


@pytest.mark.parametrize("code", [libvirt.VIR_ERR_AUTH_UNAVAILABLE, libvirt.VIR_ERR_AUTH_FAILED])
def test_a_refused_client_is_told_about_the_user_database_not_the_daemon(code: int) -> None:
    message = "authentication unavailable: no polkit agent available to authenticate action 'org.libvirt.unix.manage'"
    error = connect_failed("qemu:///system", code, message)
    assert error.kind is ErrorKind.CONNECTION
    line = str(error)
    assert "\n" not in line and message in line
    assert "usermod -aG libvirt" in line and "SupplementaryGroups= is not enough" in line
    assert "start libvirtd" not in line


def test_an_absent_daemon_is_told_to_start_it() -> None:
    error = connect_failed("qemu:///system", libvirt.VIR_ERR_NO_CONNECT, "Failed to connect socket: No such file")
    assert "fix: start libvirtd (or virtqemud)" in str(error) and "usermod" not in str(error)
