"""PlainSafeLoader must load exactly what PyYAML's safe loader loads, errors included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from handler.baremetal.yaml_loader import PlainSafeLoader

REFERENCE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REPO = Path(__file__).resolve().parents[2]

DOCUMENTS = {
    "scalars": "a: 1\nb: [1, 2.5, true, null, ~, 'x', \"y\", 0x1f, 0o17, 1_000, 1:30, .inf, -.nan]\n",
    "yaml-1.1-booleans-and-octal": "a: yes\nb: no\nc: on\nd: Off\ne: 010\nf: 1e3\n",
    "explicit-tags": "a: !!str 123\nb: !!int '7'\nc: !!float '1'\n",
    "non-string-keys": "{1: a, 1.5: b, true: c, null: d, 2001-01-01: e}\n",
    "merge-key": "base: &b {x: 1, y: [1, 2]}\nd:\n  <<: *b\n  z: 3\ne: *b\n",
    "value-key": "= : 1\nk: v\n",
    "set": "!!set {a, b}\n",
    "omap": "!!omap [a: 1, b: 2]\n",
    "timestamp-and-binary": "t: 2001-12-14t21:59:43.10-05:00\nbin: !!binary aGVsbG8=\n",
    "sequence-key": "? [1, 2]\n: x\n",
    "mapping-key": "? {a: 1}\n: x\n",
    "unknown-tag": "x: !foo bar\n",
    "python-tag": "- !!python/object:os.system x\n",
    "duplicate-keys": "k: 1\nk: 2\n",
    "nested": "a: {b: {c: [{d: e}, [f, g]]}}\n",
    "empty": "",
    "comment-only": "# nothing\n",
    "null-document": "null\n",
    "scalar-document": "123\n",
    "two-documents": "---\na: 1\n---\nb: 2\n",
    "syntax-error": "a: [1, 2\n",
    "errors-in-construction-order": "a: {b: !x 1}\nc: !y 2\n",
    "map-key-before-its-bad-tag": "? {a: !t v}\n: x\n",
    "int-that-fails": "a: {b: 0b_}\nc: 0x_\n",
    "date-that-fails": "a: [2001-13-01]\nb: 2001-01-45\n",
    "explicit-int-that-fails": "a: !!int x\n",
    "deeper-than-recursion": "a: " + "[" * 600 + "]" * 600 + "\n",
}


def _load(loader: Any, text: str) -> tuple[str, str]:
    try:
        return "ok", repr(list(yaml.load_all(text, Loader=loader)))
    except (yaml.YAMLError, ValueError) as error:
        return "error", f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_loads_what_the_safe_loader_loads(text: str) -> None:
    assert _load(PlainSafeLoader, text) == _load(REFERENCE, text)


@pytest.mark.parametrize("path", sorted((REPO / "examples").rglob("*.yaml")), ids=lambda p: p.name)
def test_example_manifests_load_the_same(path: Path) -> None:
    text = path.read_text()
    assert _load(PlainSafeLoader, text) == _load(REFERENCE, text)


def test_aliases_share_one_object() -> None:
    loaded = yaml.load("a: &x [1]\nb: *x\n", Loader=PlainSafeLoader)
    assert loaded["a"] is loaded["b"]


def test_recursive_structures_are_built() -> None:
    items = yaml.load("&a [*a, 1]\n", Loader=PlainSafeLoader)
    mapping = yaml.load("&m {self: *m}\n", Loader=PlainSafeLoader)
    assert items[0] is items
    assert mapping["self"] is mapping
