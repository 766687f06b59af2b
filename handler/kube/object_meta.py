"""Two fields of an API object's metadata, read the same way everywhere (absent: empty string)."""

from __future__ import annotations

from typing import Any


def resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def uid_of(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid", ""))
