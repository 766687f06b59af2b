"""Running a bench's libvirt URI on the private libvirtd of ``--private-libvirtd``.

``test+unix:///default`` is libvirt's test driver inside libvirtd, reached over its socket
as a deployed agent reaches libvirt; every connection to it shares one driver state.
"""

from __future__ import annotations


def through_daemon(uri: str) -> bool:
    return uri.split(":", 1)[0].endswith("+unix")


def on_daemon_of(uri: str, daemon_uri: str) -> str:
    """``uri`` over the socket of the daemon behind ``daemon_uri`` (``...?socket=PATH``), unless
    ``uri`` names a socket itself or does not go through a daemon."""
    if not through_daemon(uri) or "socket=" in uri:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}socket={daemon_uri.split('socket=', 1)[1]}"
