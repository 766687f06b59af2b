"""A line reader for the plain block YAML that VMI manifests are written in.

libyaml parses fast, but PyYAML then builds a node per scalar and resolves its tag in Python,
which for a 17-line manifest costs several times the parse. ``load_block`` reads the subset
manifests are written in — block maps and lists, one-line plain or simply quoted scalars,
``{}``/``[]``, comments, a leading ``---`` — and answers ``None`` for anything else (anchors,
tags, flow collections, multi-line or escaped scalars, tabs, non-ASCII, several documents,
anything malformed), which the caller then hands to PyYAML. Plain scalars are resolved with
PyYAML's own implicit-resolver table and built by its own safe constructor, so what this
returns is exactly what ``yaml.safe_load`` returns; every error is left to PyYAML.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml import ScalarNode

_TAG = "tag:yaml.org,2002:"
_BUILT = {
    tag: yaml.constructor.SafeConstructor.yaml_constructors[_TAG + tag]
    for tag in ("bool", "int", "float", "null", "timestamp")
}
"""The implicit tags built here (with PyYAML's safe constructor); merge and value keys are left to PyYAML."""
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_WILDCARD = tuple(yaml.resolver.Resolver.yaml_implicit_resolvers.get(None, ()))
_RESOLVERS = {
    first: tuple(resolvers) + _WILDCARD
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    if first is not None
}
"""PyYAML's implicit resolvers by first character, in its order (``Resolver.resolve`` does the same walk)."""

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]").search
"""With ``str.isascii``: printable ASCII lines only (no tabs, no carriage returns)."""
_START = r"[A-Za-z0-9_./~+=]"
_INNER = r"[A-Za-z0-9_./~+=@-]"
_PLAIN = rf"{_START}(?:{_INNER}|:(?={_INNER}))*"
"""A plain word: no indicator first, no ``: `` or `` #`` inside (a ``:`` only before a word character)."""
_QUOTED = r"'[^']*'|\"[^\"\\]*\""
_LINE = re.compile(
    rf"(?!\.\.\.)(?P<indent> *)(?:(?P<dash>-)(?P<pad> +|$))?"
    rf"(?:(?P<key>{_PLAIN}|{_QUOTED}):(?: +(?P<value>{_PLAIN}(?: +{_PLAIN})*|{_QUOTED}|{{}}|\[\]))?"
    rf"|(?P<node>{_PLAIN}(?: +{_PLAIN})*|{_QUOTED}|{{}}|\[\]))?"
    r"(?: +#.*| *)"
).fullmatch
"""One content line: ``key: value``, ``key:``, a lone value, each maybe after ``- ``; or ``-``.
A document end (``...``) never matches, nor does any ``---`` line (the first one is checked apart)."""
_LONG = 1000
"""Longer lines are left to PyYAML (libyaml caps a simple key at 1,024 characters)."""
_DEEPEST = 100
"""Lines further in are left to PyYAML: each column of depth costs this reader up to two frames
of recursion, and PyYAML's safe constructor builds deep documents without recursing."""
_CACHE_SIZE = 4096
"""Lines and scalars repeat from manifest to manifest; each cache is emptied when it holds this many."""

_MAP, _SEQ, _NODE = 0, 1, 2


class _Unhandled(Exception):
    """Outside the subset: PyYAML reads it."""


Token = tuple[int, int, str | None, str | None]
"""(column, kind, key, value); a ``- key: value`` line is a _SEQ token followed by a _MAP one."""


def load_block(text: str) -> dict[Any, Any] | None:
    """The document ``text`` holds when it is a block mapping in the subset, else None."""
    if not text.isascii() or _CONTROL(text):
        return None
    try:
        tokens = _tokens(text)
        if not tokens or tokens[0][1] != _MAP:
            return None
        document, end = _mapping(tokens, 0, tokens[0][0])
    except _Unhandled:
        return None
    return document if end == len(tokens) else None


def _tokens(text: str) -> list[Token]:
    tokens: list[Token] = []
    marker = False
    for line in text.split("\n"):
        found = _LINES.get(line)
        if found is None:
            if line == "---":  # one document start, before any content
                if tokens or marker:
                    raise _Unhandled
                marker = True
                continue
            found = _line_tokens(line)
            if len(_LINES) >= _CACHE_SIZE:
                _LINES.clear()
            _LINES[line] = found
        tokens += found
    return tokens


_LINES: dict[str, tuple[Token, ...]] = {}
_UNREAD: tuple[Token, ...] = ((-1, -1, None, None),)
"""The token of a line outside the subset: at no column, so no block takes it."""


def _line_tokens(line: str) -> tuple[Token, ...]:
    """A blank or comment line gives none, ``- key: value`` two, any other line one."""
    body = line.lstrip(" ")
    if not body or body[0] == "#":
        return ()
    match = _LINE(line) if len(line) < _LONG else None
    if match is None:
        return _UNREAD
    indent, dash, pad, key, value, node = match.groups()
    column = len(indent)
    if column + len(pad or "") > _DEEPEST:
        return _UNREAD
    if dash is None:
        return ((column, _NODE, None, node),) if key is None else ((column, _MAP, key, value),)
    if key is None:
        return ((column, _SEQ, None, node),)
    return (column, _SEQ, None, None), (column + 1 + len(pad), _MAP, key, value)


def _mapping(tokens: list[Token], at: int, column: int) -> tuple[dict[Any, Any], int]:
    """The block mapping whose keys sit at ``column``, from ``tokens[at]`` on."""
    mapping: dict[Any, Any] = {}
    end = len(tokens)
    while at < end:
        indent, kind, key, value = tokens[at]
        if indent != column or kind != _MAP:
            break
        at += 1
        if value is None:
            mapping[_scalar(key)], at = _nested(tokens, at, column, indentless=True)
            continue
        mapping[_scalar(key)] = _scalar(value)
        if at < end and tokens[at][0] > column:
            raise _Unhandled  # a continuation line (folded into the scalar by YAML) or an error
    return mapping, at


def _sequence(tokens: list[Token], at: int, column: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    end = len(tokens)
    while at < end:
        indent, kind, _, value = tokens[at]
        if indent != column or kind != _SEQ:
            break
        at += 1
        if value is None:  # ``- key: value`` too: its map's token follows, one column deeper or more
            item, at = _nested(tokens, at, column, indentless=False)
        else:
            item = _scalar(value)
            if at < end and tokens[at][0] > column:
                raise _Unhandled
        items.append(item)
    return items, at


def _nested(tokens: list[Token], at: int, column: int, *, indentless: bool) -> tuple[Any, int]:
    """The value of ``key:`` or ``-`` with nothing after it: the deeper lines below, or null."""
    if at == len(tokens):
        return None, at
    indent, kind, _, value = tokens[at]
    if indent > column:
        if kind == _MAP:
            return _mapping(tokens, at, indent)
        if kind == _SEQ:
            return _sequence(tokens, at, indent)
        at += 1
        if at < len(tokens) and tokens[at][0] > column:
            raise _Unhandled
        return _scalar(value), at
    if indentless and indent == column and kind == _SEQ:
        return _sequence(tokens, at, column)  # YAML lets a map's list sit at the key's column
    return None, at


def _scalar(raw: str | None) -> Any:
    if raw is None:
        return None
    value = _PLAINS.get(raw, _MISSING)  # only plain scalars are kept, and no quote starts one
    if value is not _MISSING:
        return value
    first = raw[0]
    if first == "'" or first == '"':
        return raw[1:-1]
    if raw == "{}":
        return {}
    if raw == "[]":
        return []
    value = _resolved(raw)
    if value is None or type(value) in _SHARED:  # never a float: each NaN is its own key
        if len(_PLAINS) >= _CACHE_SIZE:
            _PLAINS.clear()
        _PLAINS[raw] = value
    return value


_MISSING = object()
_PLAINS: dict[str, Any] = {}
_SHARED = (str, int, bool)
"""Immutable results that compare equal exactly when equal: safe to hand out again."""


def _resolved(raw: str) -> Any:
    """The plain scalar as PyYAML's implicit resolvers and safe constructor make it."""
    for tag, regexp in _RESOLVERS.get(raw[0], _WILDCARD):
        if regexp.match(raw):
            built = _BUILT.get(tag[len(_TAG) :])
            if built is None:
                raise _Unhandled
            try:
                return built(_CONSTRUCTOR, ScalarNode(tag, raw))
            except Exception:  # e.g. 0b_ or 2001-13-45: PyYAML raises it, in its own order
                raise _Unhandled from None
    return raw
