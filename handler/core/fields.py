"""Typed reads from a parsed manifest, each failure naming the exact field path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from handler.core.refusal import Refusal, Refused


def invalid(path: str, problem: str, fix: str) -> Refused:
    return Refused(Refusal("InvalidSpec", path, problem, fix))


def unsupported(path: str, why: str = "") -> Refused:
    hint = f" ({why})" if why else ""
    return Refused(
        Refusal(
            "UnsupportedField",
            path,
            f"is not supported by qat-handler{hint}",
            "remove the field; the agent never ignores a setting that would change the guest",
        )
    )


def mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(path, f"must be an object, got {type(value).__name__}", "write it as a mapping")
    return value


def sequence(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(path, f"must be a list, got {type(value).__name__}", "write it as a list")
    return value


def string(value: Any, path: str, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise invalid(path, "is missing", "set it")
        return ""
    if not isinstance(value, str):
        raise invalid(path, f"must be a string, got {value!r}", "quote the value")
    return value


def boolean(value: Any, path: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(path, f"must be true or false, got {value!r}", "write true or false without quotes")
    return value


def integer(value: Any, path: str, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, f"must be an integer, got {value!r}", f"use a whole number from {low} to {high}")
    if not low <= value <= high:
        raise invalid(path, f"{value} is out of range", f"use a whole number from {low} to {high}")
    return value


def only_known(obj: Mapping[str, Any], path: str, known: Iterable[str], why: str = "") -> None:
    """Refuse the first key that is not in ``known``: unknown settings are never dropped silently."""
    allowed = set(known)
    for key in obj:
        if key not in allowed:
            raise unsupported(f"{path}.{key}", why)
