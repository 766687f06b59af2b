"""What happens to the guests when the agent stops: a setting the CLI parses and the engine obeys."""

from __future__ import annotations

from enum import StrEnum


class StopPolicy(StrEnum):
    SHUTDOWN = "shutdown"
    """Shut every guest down (ACPI, destroy at grace) before the agent exits, like libvirt-guests."""
    KEEP = "keep"
    """Leave guests running; a new agent adopts them. For upgrades of the agent itself."""
