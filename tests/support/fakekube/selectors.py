"""Label and field selectors, parsed and matched the way the real server does.

Label selectors: ``k=v``, ``k==v``, ``k!=v`` (also matches objects without ``k``),
``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)`` (also matches objects without
``k``), ``k>n``, ``k<n``; requirements are ANDed. Field selectors: ``f=v``,
``f==v``, ``f!=v`` over the field labels a resource type supports; any other
label is a 400, like the real server's "field label not supported".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?{_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_NAME})?$")
_SET_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s!=<>(),]*)$")
_FIELD_ALIASES = {"source": "source.component"}  # core events: the "source" label means source.component


class SelectorError(ValueError):
    pass


def valid_label_key(key: str) -> bool:
    return bool(_LABEL_KEY.match(key)) and len(key.rpartition("/")[2]) <= 63 and len(key.partition("/")[0]) <= 253


def valid_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _split_top_level(text: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


Requirement = Callable[[dict[str, str]], bool]


def _label_requirement(term: str) -> Requirement:
    if term.startswith("!"):
        key = term[1:].strip()
        _check_key(key, term)
        return lambda labels: key not in labels
    if m := _SET_TERM.match(term):
        key, op = m["key"], m["op"]
        _check_key(key, term)
        values = {v.strip() for v in m["values"].split(",") if v.strip()}
        if not values or not all(valid_label_value(v) for v in values):
            raise SelectorError(f"invalid label selector term {term!r}: bad value set")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP_TERM.match(term):
        key, op, value = m["key"], m["op"], m["value"]
        _check_key(key, term)
        if op in ("=", "=="):
            _check_value(value, term)
            return lambda labels: labels.get(key) == value
        if op == "!=":
            _check_value(value, term)
            return lambda labels: labels.get(key) != value
        try:
            bound = int(value)
        except ValueError:
            raise SelectorError(f"invalid label selector term {term!r}: {op} needs an integer") from None
        return lambda labels: _compare(labels.get(key), op, bound)
    _check_key(term, term)
    return lambda labels: term in labels


def _compare(value: str | None, op: str, bound: int) -> bool:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return False
    return number is not None and (number > bound if op == ">" else number < bound)


def _check_key(key: str, term: str) -> None:
    if not valid_label_key(key):
        raise SelectorError(f"unable to parse requirement {term!r}: invalid label key {key!r}")


def _check_value(value: str, term: str) -> None:
    if not valid_label_value(value):
        raise SelectorError(f"unable to parse requirement {term!r}: invalid label value {value!r}")


class LabelSelector:
    def __init__(self, text: str | None):
        self.text = text or ""
        self._reqs = [_label_requirement(t) for t in _split_top_level(self.text)]

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in self._reqs)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def field_value(obj: Obj, label: str) -> str:
    node: Any = obj
    for part in _FIELD_ALIASES.get(label, label).split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


class FieldSelector:
    def __init__(self, text: str | None, supported: Iterable[str]):
        self.text = text or ""
        supported = frozenset(supported)
        self._reqs: list[tuple[str, bool, str]] = []  # (label, want_equal, value)
        for term in (t.strip() for t in _split_unescaped(self.text, ",")):
            if not term:
                continue
            m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", term)
            if not m:
                raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
            label, op, value = m[1].strip(), m[2], m[3].strip()
            if label not in supported:
                raise SelectorError(f"field label not supported: {label}")
            self._reqs.append((label, op != "!=", value))

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        return all((field_value(obj, label) == value) == equal for label, equal, value in self._reqs)
