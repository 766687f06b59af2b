"""libvirt's default event loop, registered once per process and run in a daemon thread.

It must be registered before the first connection is opened, or that connection
never delivers events.
"""

from __future__ import annotations

import threading

import libvirt

_lock = threading.Lock()
_thread: threading.Thread | None = None


def ensure_event_loop() -> None:
    global _thread
    with _lock:
        if _thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _thread = threading.Thread(target=_run, name="libvirt-events", daemon=True)
        _thread.start()


def _run() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()
