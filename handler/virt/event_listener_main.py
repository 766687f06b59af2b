"""The event listener's own process: it hears one libvirt daemon's lifecycle events and prints them.

Started by ``handler/virt/event_listener.py`` as ``python -m handler.virt.event_listener_main URI``.
It writes one JSON array per line on stdout:
- ``["ready"]`` once it listens;
- ``["event", name, event, detail]`` for each lifecycle event;
- ``["error", code, message]`` if it cannot connect (it then exits).

When the connection closes it exits: the end of its output is the agent's notice.

It also exits when its stdin reaches end of file, which means the agent is gone, even after
a ``kill -9``. SIGTERM, SIGINT and SIGHUP are ignored: they are the agent's to handle (a stop
under ``KillMode=control-group`` or a Ctrl-C reaches every process), and the agent still needs
the events while it shuts its guests down.

Only libvirt and the standard library are imported here, so it starts quickly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import libvirt

_write_lock = threading.Lock()


def say(*fields: object) -> None:
    line = json.dumps(fields) + "\n"
    try:
        with _write_lock:
            sys.stdout.write(line)
            sys.stdout.flush()
    except OSError:  # nobody reads any more: the agent is gone
        os._exit(0)


def _exit_when_agent_goes() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def _lifecycle(_conn: object, dom: libvirt.virDomain, event: int, detail: int, _opaque: object) -> None:
    say("event", dom.name(), event, detail)


def _closed(_conn: object, _reason: int, _opaque: object) -> None:
    os._exit(0)  # every event was flushed as it was said


def main(argv: list[str]) -> int:
    for ignored in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the agent's to handle
        signal.signal(ignored, signal.SIG_IGN)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    threading.Thread(target=_exit_when_agent_goes, name="stdin", daemon=True).start()
    # Registered before the connection opens, so that it gets events and keepalive.
    libvirt.virEventRegisterDefaultImpl()
    try:
        conn = libvirt.open(argv[1])
        conn.registerCloseCallback(_closed, None)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, _lifecycle, None)
    except libvirt.libvirtError as error:
        say("error", error.get_error_code() or 0, error.get_error_message() or str(error))
        return 1
    say("ready")
    while True:
        libvirt.virEventRunDefaultImpl()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
