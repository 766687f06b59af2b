"""Kubernetes resource quantities, for memory sizes (``1Gi``, ``512M``, ``268435456``)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_EXACT_DIGITS = 12
"""Whole numbers this long times any suffix (< 2**51) stay below 10**28, Decimal's default precision."""
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$")


def parse_bytes(text: str | int) -> int | None:
    """Bytes for a quantity, rounded up to a whole byte; None when it is not a quantity."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if text >= 0 else None
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        return None
    number, suffix = match.groups()
    if len(number) <= _EXACT_DIGITS and "." not in number:
        return int(number) * _SUFFIX[suffix]  # what Decimal gives: the product fits its precision
    try:
        value = Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation:
        return None
    return int(value.to_integral_value(rounding="ROUND_CEILING"))
