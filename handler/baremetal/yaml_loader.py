"""PyYAML's safe loader, with a short path for the plain maps, lists and strings manifests are made of.

libyaml parses in C, but PyYAML builds the Python objects in Python through generic
machinery (generators, deep-construction bookkeeping) that costs more than the parse.
``PlainSafeLoader`` builds plain ``!!map``, ``!!seq`` and ``!!str`` nodes directly and hands
every other node (numbers, booleans, null, timestamps, merge keys, ``!!set``, unknown tags)
to the safe constructor itself, so the result, errors included, is what ``CSafeLoader`` gives.
Anchors and aliases keep their identity: both paths share the constructor's memo.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml import MappingNode, Node, ScalarNode, SequenceNode

try:
    _SafeLoader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_SPECIAL_KEYS = (_TAG + "merge", _TAG + "value")
"""Keys the safe constructor rewrites (``<<`` merges, ``=``): such maps take the full path."""


class PlainSafeLoader(_SafeLoader):  # type: ignore[misc]
    def construct_document(self, node: Node) -> Any:
        self._plain(node)
        return super().construct_document(node)  # finds the result in the memo, then cleans up

    def _plain(self, node: Node) -> Any:
        built = self.constructed_objects
        if node in built:
            return built[node]
        tag = node.tag
        if tag == _STR and isinstance(node, ScalarNode):
            built[node] = node.value
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
            return self.construct_object(node, deep=True)
        return built[node]


def _plain_keys(node: MappingNode) -> bool:
    """Every key is a scalar (so hashable once built) that the safe constructor does not rewrite."""
    return all(isinstance(key, ScalarNode) and key.tag not in _SPECIAL_KEYS for key, _ in node.value)
