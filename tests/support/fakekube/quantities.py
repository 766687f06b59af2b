"""Resource quantities (``500m``, ``2``, ``1280Mi``) and what a pod requests, as the scheduler adds them up."""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

from .resources import Obj

_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)$")

Amounts = Counter[str]


def amount(value: Any) -> Decimal:
    """A quantity as a number (``500m`` -> 0.5); anything unreadable counts as 0."""
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        return Decimal(0)
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except InvalidOperation:
        return Decimal(0)


def amounts(resources: Obj | None) -> Amounts:
    return Counter({name: amount(value) for name, value in (resources or {}).items()})  # type: ignore[misc]


def container_requests(container: Obj) -> Amounts:
    """Requests, with each resource that has only a limit requesting its limit (the API's defaulting)."""
    resources = container.get("resources") or {}
    return Counter({**amounts(resources.get("limits")), **amounts(resources.get("requests"))})


def pod_requests(pod: Obj) -> Amounts:
    """The sum over containers; an init container needing more of something raises that to its need."""
    spec = pod.get("spec") or {}
    total: Amounts = Counter()
    for container in spec.get("containers") or []:
        total.update(container_requests(container))
    for init in spec.get("initContainers") or []:
        for name, value in container_requests(init).items():
            total[name] = max(total[name], value)
    return total
