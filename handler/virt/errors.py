"""libvirt errors sorted by what the agent should do about them, decided by error code."""

from __future__ import annotations

from enum import StrEnum

import libvirt

from handler.core.port_error import PortError


class ErrorKind(StrEnum):
    NO_DOMAIN = "no-domain"
    """The domain does not exist: fine for undefine/destroy, a miss for lookups."""
    WRONG_STATE = "wrong-state"
    """Already running / not running: the operation's goal already holds."""
    CONNECTION = "connection"
    """The connection to libvirtd broke: reconnect and retry."""
    UNSUPPORTED = "unsupported"
    """The driver or host cannot do it (e.g. no VFIO on this host)."""
    OTHER = "other"


_CONNECTION_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
}
_AUTH_CODES = {libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED, libvirt.VIR_ERR_AUTH_UNAVAILABLE}
"""Connecting failed because libvirtd answered and refused this client."""
_UNSUPPORTED_CODES = {
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
}


class VirtError(PortError):
    """A libvirt failure with its kind, code and message on one line."""

    def __init__(self, kind: ErrorKind, code: int, message: str, operation: str) -> None:
        super().__init__(f"{operation}: {message} (libvirt error {code})")
        self.reason = "LibvirtUnavailable" if kind is ErrorKind.CONNECTION else "SyncFailed"
        self.kind = kind
        self.code = code
        self.message = message
        self.operation = operation


def classify(error: libvirt.libvirtError) -> ErrorKind:
    code = error.get_error_code()
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return ErrorKind.NO_DOMAIN
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        return ErrorKind.WRONG_STATE
    if code in _CONNECTION_CODES:
        return ErrorKind.CONNECTION
    if code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR) and error.get_error_domain() in (
        libvirt.VIR_FROM_RPC,
        libvirt.VIR_FROM_REMOTE,
    ):
        # The client side of the transport ("client socket is closed" after libvirtd restarted).
        return ErrorKind.CONNECTION
    if code in _UNSUPPORTED_CODES:
        return ErrorKind.UNSUPPORTED
    return ErrorKind.OTHER


def wrap(error: libvirt.libvirtError, operation: str) -> VirtError:
    message = (error.get_error_message() or str(error)).strip().replace("\n", " ")
    return VirtError(classify(error), error.get_error_code() or 0, message, operation)


def unreachable(uri: str, error: libvirt.libvirtError) -> VirtError:
    """``error`` from connecting to ``uri``, with what to do about it."""
    return connect_failed(uri, error.get_error_code() or 0, error.get_error_message() or str(error))


def connect_failed(uri: str, code: int, message: str) -> VirtError:
    """Connecting to ``uri`` failed with libvirt's ``code`` and ``message`` (here, or in the
    event listener's process), on one line with what to do about it."""
    if code in _AUTH_CODES:
        hint = (
            "add this user to group libvirt in the user database (usermod -aG libvirt USER; libvirt's polkit rule"
            " reads it, so a service's SupplementaryGroups= is not enough), or run as root"
        )
    else:
        hint = "start libvirtd (or virtqemud), or check that this user is in the libvirt group"
    one_line = message.strip().replace("\n", " ")
    return VirtError(ErrorKind.CONNECTION, code, f"{one_line}; fix: {hint}", f"connect {uri}")
