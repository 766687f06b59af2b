"""How long the agent may take to stop with ``--on-stop shutdown``, and what systemd must allow.

Guests are stopped in parallel, so the agent needs the largest grace period among them plus
STOP_MARGIN_SECONDS for the destroy, the undefine and the last status write. The unit's
``TimeoutStopSec=`` covers graces up to UNIT_GRACE_SECONDS; for a longer one (the parser
accepts up to MAX_GRACE_SECONDS) the agent asks systemd for the extra time when it starts
stopping (``EXTEND_TIMEOUT_USEC``), so no accepted grace is cut short by a SIGKILL.
"""

from __future__ import annotations

from handler.core.vmi_schema import MAX_GRACE_SECONDS

STOP_MARGIN_SECONDS = 30
"""After the largest grace ran out: destroy (libvirt gives QEMU up to 15 s), undefine, last status."""
UNIT_GRACE_SECONDS = 300
"""The largest grace the unit's own stop timeout covers."""
UNIT_STOP_TIMEOUT_SECONDS = UNIT_GRACE_SECONDS + STOP_MARGIN_SECONDS
"""What ``TimeoutStopSec=`` in systemd/qat-handler.service must be at least."""


def stop_seconds(largest_grace: int) -> int:
    """The time the agent may need from the stop signal until it exits."""
    return max(0, largest_grace) + STOP_MARGIN_SECONDS


def stop_extension(largest_grace: int) -> int | None:
    """Seconds to ask systemd for when stopping begins, or None if the unit's timeout suffices."""
    needed = stop_seconds(min(largest_grace, MAX_GRACE_SECONDS))
    return needed if needed > UNIT_STOP_TIMEOUT_SECONDS else None
