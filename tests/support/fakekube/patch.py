"""Patch formats: JSON merge patch (RFC 7396), JSON patch (RFC 6902), and a small
strategic merge patch (core types only, like the real server).

The strategic merge here knows the list merge keys of the core objects the fake
serves (containers by name, conditions by type, ownerReferences by uid, finalizers
as a merged set, ...) plus the ``$patch: delete|replace`` and
``$deleteFromPrimitiveList/<field>`` directives; every other list is replaced.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

_LIST_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
}
_SET_LISTS = {"finalizers"}
_DELETE = object()  # a map patched with {"$patch": "delete"}


class PatchError(Exception):
    """``code`` is 400 for a malformed patch, 422 when a well-formed patch cannot be applied."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --- JSON merge patch -------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- JSON patch -----------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(400, f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]] if path else []


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(422, f"invalid array index {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(422, f"array index {idx} out of range")
    return idx


def _resolve(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise PatchError(422, f"path /{'/'.join(tokens)} does not exist")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], allow_end=True), value)
    else:
        raise PatchError(422, f"cannot add at /{'/'.join(tokens)}: parent is not a container")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError(422, "cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    if isinstance(parent, dict) and tokens[-1] in parent:
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, tokens[-1], allow_end=False))
    raise PatchError(422, f"cannot remove /{'/'.join(tokens)}: it does not exist")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(400, f"malformed JSON patch operation {op!r}")
        kind, path = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(400, f"JSON patch {kind} operation needs a value")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _resolve(doc, path)  # must exist
            if path:
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_resolve(doc, source))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _resolve(doc, path) != op["value"]:
                raise PatchError(422, f"testing value {op['path']} failed")
        else:
            raise PatchError(400, f"unknown JSON patch operation {kind!r}")
    return doc


# --- strategic merge patch (subset) -----------------------------------------


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    result = _smp_map(target, patch)
    return {} if result is _DELETE else result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _smp_map(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip_directives(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    removals: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            removals[key.partition("/")[2]] = value if isinstance(value, list) else [value]
        elif key.startswith("$"):
            continue  # $setElementOrder, $retainKeys: ordering/pruning hints the fake does not need
        elif value is None:
            out.pop(key, None)
        elif isinstance(value, list) and isinstance(out.get(key), list) and key in _SET_LISTS:
            out[key] = out[key] + [v for v in value if v not in out[key]]
        elif isinstance(value, list) and isinstance(out.get(key), list) and key in _LIST_MERGE_KEYS:
            out[key] = _smp_list(out[key], value, _LIST_MERGE_KEYS[key])
        else:
            merged = _smp_map(out.get(key), value) if isinstance(value, dict) else _strip_directives(value)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = copy.deepcopy(merged)
    for key, values in removals.items():
        if isinstance(out.get(key), list):
            out[key] = [v for v in out[key] if v not in values]
    return out


def _smp_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            out.append(_strip_directives(item))
            continue
        idx = next((i for i, e in enumerate(out) if isinstance(e, dict) and e.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = _smp_map(out[idx], item)
    return out


# --- what a request changes ---------------------------------------------------


def touched_paths(content_type: str | None, body: Any) -> list[str]:
    """Dotted paths a write request sets or removes: leaves of a merge patch, the
    ``path``/``from`` of JSON patch operations, and ``"*"`` for a whole-object body."""
    if content_type == JSON_PATCH and isinstance(body, list):
        out: list[str] = []
        for op in body:
            for key in ("from", "path"):
                if isinstance(op, dict) and isinstance(op.get(key), str):
                    try:
                        out.append(".".join(_pointer(op[key])))
                    except PatchError:  # a malformed pointer: report it as sent
                        out.append(op[key])
        return out
    if content_type in (MERGE, STRATEGIC) and isinstance(body, dict):
        return _leaves(body, "")
    return ["*"]


def _leaves(node: dict[str, Any], prefix: str) -> list[str]:
    out = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, path + "."))
        else:
            out.append(path)
    return out
