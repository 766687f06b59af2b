"""Server-side printing for custom resources, as the apiextensions server does it: when a client asks
for a ``meta.k8s.io/v1`` Table (``kubectl get`` does) and a CustomResourceDefinition for the type
is stored, the columns are Name plus the CRD's ``additionalPrinterColumns`` for that version
(``date`` cells as an age such as ``5m``). Without a CRD the plain list is served, and kubectl
prints it by itself.

JSONPath is the subset printer columns use: ``.a.b``, ``[N]`` and ``[?(@.key=='value')]``.
"""

from __future__ import annotations

import re
import time
from calendar import timegm
from typing import Any

from .resources import Obj, ResourceType

_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_-]+)==['\"]([^'\"]*)['\"]\)\]")


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in str(accept)


def columns_for(crd: Obj | None, rt: ResourceType) -> list[Obj] | None:
    if crd is None:
        return None
    for version in (crd.get("spec") or {}).get("versions") or []:
        if version.get("name") == rt.version:
            return list(version.get("additionalPrinterColumns") or [_AGE])
    return None


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def table(columns: list[Obj], items: list[Obj], resource_version: str) -> Obj:
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = [
        {
            "cells": [item["metadata"]["name"], *(_cell(c, item) for c in columns)],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]},
        }
        for item in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _cell(column: Obj, item: Obj) -> Any:
    value = evaluate(column.get("jsonPath", ""), item)
    if value is None:
        return None  # kubectl prints <none>
    if column.get("type") == "date" and isinstance(value, str):
        return _age(value)
    return value


def evaluate(path: str, obj: Any) -> Any:
    """The first value ``path`` selects in ``obj``, or None."""
    node = obj
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            return None
        position = step.end()
        key, index, field, wanted = step.groups()
        if key is not None:
            node = node.get(key) if isinstance(node, dict) else None
        elif index is not None:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            matches = [e for e in node or [] if isinstance(e, dict) and str(e.get(field)) == wanted]
            node = matches[0] if matches else None
        if node is None:
            return None
    return node


def _age(stamp: str) -> str:
    try:
        seconds = int(time.time() - timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return "<invalid>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
