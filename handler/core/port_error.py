"""The one exception type the reconciler expects from its ports (libvirt, the API server).

It carries a CamelCase reason for the Synchronized condition; its text is one line.
Anything else escaping a port is a bug and is logged with its traceback.
"""

from __future__ import annotations


class PortError(Exception):
    reason: str = "SyncFailed"
