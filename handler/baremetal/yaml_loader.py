"""PyYAML's safe loader, with a short path for the plain maps, lists and scalars manifests are made of.

libyaml parses in C, but PyYAML builds the Python objects in Python through generic
machinery (generators, deep-construction bookkeeping) that costs more than the parse.
``PlainSafeLoader`` builds plain ``!!map``, ``!!seq`` and ``!!str`` nodes directly, and
``!!int``, ``!!float``, ``!!bool``, ``!!null`` and ``!!timestamp`` scalars with the safe
constructor's own functions. At the first other node (merge keys, ``!!set``, unknown tags,
non-scalar keys), the first scalar that fails to build, or nesting too deep for its recursion,
it drops what it built and lets the safe constructor build the whole document, so results and
errors (which error comes first included) are what ``CSafeLoader`` gives. Anchors and aliases
keep their identity: the short path keeps the constructor's memo.

``load_documents`` first tries the line reader of ``yaml_block`` (plain block manifests, no
libyaml at all) and gives PyYAML the rest.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml import MappingNode, Node, ScalarNode, SequenceNode

from handler.baremetal.yaml_block import load_block

try:
    _SafeLoader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_SPECIAL_KEYS = (_TAG + "merge", _TAG + "value")
"""Keys the safe constructor rewrites (``<<`` merges, ``=``): such maps take the full path."""
_SCALARS = {_TAG + name for name in ("int", "float", "bool", "null", "timestamp")}


class _Unplain(Exception):
    """The document needs the safe constructor's own order of construction."""


def load_documents(text: str) -> list[Any]:
    """Every document of ``text``, as ``yaml.safe_load_all`` gives them; raises what it raises."""
    document = load_block(text)
    if document is not None:
        return [document]
    return list(yaml.load_all(text, Loader=PlainSafeLoader))


class PlainSafeLoader(_SafeLoader):  # type: ignore[misc]
    def construct_document(self, node: Node) -> Any:
        try:
            self._plain(node)
        except (_Unplain, RecursionError):  # the safe constructor needs no deep recursion
            self.constructed_objects: dict[Node, Any] = {}  # start over: the safe constructor builds it all
        return super().construct_document(node)  # finds the result in the memo, then cleans up

    def _plain(self, node: Node) -> Any:
        built = self.constructed_objects
        if node in built:
            return built[node]
        tag = node.tag
        if tag == _STR and isinstance(node, ScalarNode):
            built[node] = node.value
        elif tag in _SCALARS and isinstance(node, ScalarNode):
            try:
                built[node] = self.yaml_constructors[tag](self, node)
            except Exception:
                raise _Unplain from None  # the safe constructor raises it, in its own order
        elif tag == _MAP and isinstance(node, MappingNode) and _plain_keys(node):
            mapping: dict[Any, Any] = {}
            built[node] = mapping  # before the children, so an alias back to this map finds it
            for key, value in node.value:
                mapping[self._plain(key)] = self._plain(value)
        elif tag == _SEQ and isinstance(node, SequenceNode):
            items: list[Any] = []
            built[node] = items
            items.extend(self._plain(item) for item in node.value)
        else:
            raise _Unplain
        return built[node]


def _plain_keys(node: MappingNode) -> bool:
    """Every key is a scalar (so hashable once built) that the safe constructor does not rewrite."""
    return all(isinstance(key, ScalarNode) and key.tag not in _SPECIAL_KEYS for key, _ in node.value)
