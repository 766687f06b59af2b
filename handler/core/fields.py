"""Typed reads from a parsed manifest, each failure naming the exact field path."""

from __future__ import annotations

import re
import unicodedata
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
    if type(value) is dict:  # what parsed YAML and JSON give; spares the ABC check
        return value
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


def xml_string(value: Any, path: str, *, required: bool = True) -> str:
    """A string that goes into the domain XML: XML 1.0 cannot carry control characters (nor
    U+FFFE/U+FFFF), and libvirt's schema refuses line breaks in paths, so they are refused here
    by name instead of failing (or changing) the guest later."""
    text = string(value, path, required=required)
    for position, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\ufffe\uffff":
            raise invalid(path, f"holds the control character {char!r} at position {position}", "remove it")
    return text


def host_path(value: Any, path: str, *, required: bool = True) -> str:
    """An absolute path of a file on the host, as libvirt's schema takes it."""
    text = xml_string(value, path, required=required)
    if text and (not text.startswith("/") or not text.strip("/")):
        raise invalid(path, f"{text!r} is not an absolute file path", "use an absolute path on the host")
    return text


def matching(value: Any, path: str, pattern: re.Pattern[str], allowed: str, *, required: bool = True) -> str:
    text = string(value, path, required=required)
    if text and not pattern.fullmatch(text):
        raise invalid(path, f"{text!r} is not valid here", f"use only {allowed}")
    return text


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
    allowed = known if isinstance(known, (frozenset, set)) else set(known)
    if allowed.issuperset(obj):
        return
    for key in obj:
        if key not in allowed:
            raise unsupported(field_path(path, key), why)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def field_path(path: str, key: Any) -> str:
    """``path.key``; a key that is not a plain name is quoted (``path['a.b\\n']``), so the
    path stays one unambiguous line whatever the manifest holds."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{key!r}]"
