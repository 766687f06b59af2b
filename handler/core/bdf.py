"""PCI addresses (domain:bus:slot.function), as device plugins hand them to us."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handler.core.refusal import Refusal, Refused

_FULL = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")
_SHORT = re.compile(r"^([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")


@dataclass(frozen=True, slots=True, order=True)
class Bdf:
    domain: int
    bus: int
    slot: int
    function: int

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"


def parse_bdf(text: str) -> Bdf | None:
    """Parse a BDF, accepting upper-case hex and a missing ``0000:`` domain; None if malformed."""
    value = text.strip().lower()
    full = _FULL.match(value)
    if full:
        dom, bus, slot, fn = full.groups()
    else:
        short = _SHORT.match(value)
        if not short:
            return None
        dom, (bus, slot, fn) = "0000", short.groups()
    if int(slot, 16) > 0x1F:
        return None
    return Bdf(int(dom, 16), int(bus, 16), int(slot, 16), int(fn, 16))


def require_bdf(text: str, source: str) -> Bdf:
    """Parse a BDF named by ``source`` (an env variable, a field) or refuse with a one-line reason."""
    bdf = parse_bdf(text)
    if bdf is None:
        raise Refused(
            Refusal(
                reason="DeviceEnvInvalid",
                subject=source,
                problem=f"{text!r} is not a PCI address",
                fix="use the form 0000:3d:01.1 (domain:bus:slot.function, hex)",
            )
        )
    return bdf
