"""The line reader must load exactly what PyYAML's safe loader loads, or leave the text to it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from handler.baremetal.yaml_block import load_block
from handler.baremetal.yaml_loader import load_documents

REFERENCE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from workload import manifest_text  # noqa: E402  (bench/ is not a package)

HANDLED = {
    "workload-with-qat": manifest_text("vmi-0001", "64Mi", with_qat=True),
    "workload-no-devices": manifest_text("idle-001", "16Mi", with_qat=False),
    "implicit-types": "a: 1\nb: 1.5\nc: yes\nd: Off\ne: ~\nf: null\ng: 0x1f\nh: 1:30\ni: 2001-12-14\nj: .inf\nk: 010\n",
    "typed-keys": "1: a\ntrue: b\nnull: c\n2001-01-01: d\n.5: e\nyes: f\n",
    "quoted": "a: 'x # y'\nb: \"1\"\n'c': ''\n\"d\": \"a: b\"\n",
    "empty-values": "a:\nb:   \nc: # nothing\nd: {}\ne: []\n",
    "indentless-list": "k:\n- a\n- b: 1\n  c: 2\n-\n  - x\n-\nz: 1\n",
    "indented-list": "k:\n  - a\n  -   b: 1\n      c:\n      - 2\n",
    "lone-scalar-below-key": "a:\n  b\nc:\n    {}\n",
    "comments-and-marker": "# head\n---\n  # indented\na: b c  # tail\n\n   \nd: e\n",
    "words-with-colons": "image: registry:5000/a/b:latest\nurl: http://x/y\n",
    "duplicate-keys": "k: 1\nk: 2\ntrue: a\n1: b\n",
    "root-indented": "  a: 1\n  b:\n    c: d\n",
    "no-final-newline": "a: b",
    "nan-keys": ".nan: a\n.nan: b\n",  # each NaN is its own key, so floats are never shared
    "marker-after-a-marker-line-was-refused": "---\na: 1\n",
}

LEFT_TO_PYYAML = {
    "flow": "a: [1, 2]\n",
    "anchor": "a: &x 1\nb: *x\n",
    "tag": "a: !!str 1\n",
    "merge-key": "<<: {a: 1}\n",
    "value-key": "=: 1\n",
    "value-scalar": "a: =\n",
    "folded-plain": "a: b\n  c\n",
    "folded-lone": "a:\n  b\n  c\n",
    "block-scalar": "a: |\n  x\n",
    "escapes": 'a: "x\\ty"\n',
    "quote-in-quote": "a: 'it''s'\n",
    "tab": "a:\tb\n",
    "non-ascii": "a: é\n",
    "crlf": "a: b\r\n",
    "two-documents": "a: 1\n---\nb: 2\n",
    "two-markers": "---\n---\na: 1\n",
    "document-end": "a: 1\n...\n",
    "marker-with-content": "--- a\n",
    "directive": "%YAML 1.1\n---\na: 1\n",
    "root-list": "- a\n",
    "root-scalar": "a\n",
    "empty": "",
    "nested-dash": "a:\n- - b\n",
    "map-after-value": "a: b\n- c\n",
    "mapping-in-value": "a: b: c\n",
    "dedent-between": "a:\n    b: 1\n  c: 2\n",
    "long-key": "k" * 1100 + ": v\n",
    "deep": "".join(" " * depth + "k:\n" for depth in range(600)),  # PyYAML builds it without recursing
    "comment-no-space": "a: b#c\n",
    "int-that-fails": "a: 0b_\n",
    "date-that-fails": "a:\n  b: 2001-13-01\nc: 2001-01-45\n",
}


def test_cached_lines_and_scalars_read_the_same_again() -> None:
    """Lines and scalars are cached across documents: a second read, and a ``---`` seen out of
    place before, change nothing."""
    assert load_block("a: 1\n---\n") is None
    for text in HANDLED.values():
        assert repr(load_block(text)) == repr(load_block(text))
    assert load_block("---\nb: yes\n") == {"b": True}


def _reference(text: str) -> tuple[str, str]:
    try:
        return "ok", repr(list(yaml.load_all(text, Loader=REFERENCE)))
    except (yaml.YAMLError, ValueError) as error:
        return "error", f"{type(error).__name__}: {error}"


def _ours(text: str) -> tuple[str, str]:
    try:
        return "ok", repr(load_documents(text))
    except (yaml.YAMLError, ValueError) as error:
        return "error", f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("text", HANDLED.values(), ids=HANDLED.keys())
def test_the_subset_is_read_here_as_pyyaml_reads_it(text: str) -> None:
    document = load_block(text)
    assert document is not None, "expected the line reader to take this text"
    assert ("ok", repr([document])) == _reference(text)  # repr tells True from 1 and 1.0 from 1


@pytest.mark.parametrize("text", LEFT_TO_PYYAML.values(), ids=LEFT_TO_PYYAML.keys())
def test_the_rest_is_left_to_pyyaml(text: str) -> None:
    assert load_block(text) is None
    assert _ours(text) == _reference(text)


@pytest.mark.parametrize("path", sorted((REPO / "examples").rglob("*.yaml")), ids=lambda p: p.name)
def test_example_manifests_load_the_same(path: Path) -> None:
    text = path.read_text()
    assert _ours(text) == _reference(text)


_KEYS = [
    "a",
    "b",
    "yes",
    "1",
    "null",
    "~",
    "'q'",
    '"d"',
    "x.y/z",
    "a:b",
    "<<",
    "=",
    "? a",
    "&x a",
    "*x",
    "a b",
    "-a",
    "",
]
_VALUES = [
    *["", "v", "1", "-1", "yes", "1.5", "0x1f", "1:30", "2001-01-01", ".inf", "~", "null", "'s'", "'it''s'"],
    *['"d"', '"e\\n"', "{}", "[]", "[1, 2]", "{a: 1}", "a b", "a  b", "a #c", "a#c", "a: b", "|", ">", "&a v"],
    *["*a", "!t v", "=", "@x", "http://x", "a:", "---", "...", "'open", "é", "\t", "- x", "- a: 1", "-"],
]
_LINES = st.builds(
    lambda indent, dash, key, value, comment: " " * indent + dash + key + value + comment,
    st.integers(0, 6),
    st.sampled_from(["", "", "- ", "-", "-  ", "- - "]),
    st.sampled_from(["", *(key + ":" for key in _KEYS), *(key + ": " for key in _KEYS)]),
    st.sampled_from(_VALUES),
    st.sampled_from(["", "", " # c", "#c", "  "]),
) | st.sampled_from(["", "# comment", "---", "...", "--- a", "%YAML 1.1"])


_SCALARS = st.sampled_from([value for value in _VALUES if value] + ["x", "1", "yes", "'q'", "{}", "[]"])
_TREES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, min_size=1, max_size=3)
        | st.dictionaries(st.sampled_from([key for key in _KEYS if key]), children, min_size=1, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def block_texts(draw: st.DrawFn) -> str:
    """A tree written as block YAML in a random style, sometimes with one line broken."""
    lines: list[str] = []

    def step() -> int:
        return draw(st.integers(1, 3))

    def write(node: Any, column: int, lead: str) -> None:
        """``lead``: what starts the first line (``key:`` or ``-``) at ``column``."""
        if not isinstance(node, (dict, list)):
            if draw(st.booleans()):
                lines.append(" " * column + lead + " " + node)
            else:
                lines.extend([" " * column + lead, " " * (column + step()) + node])
            return
        if lead == "-" and isinstance(node, dict) and draw(st.booleans()):  # ``- key: value``
            start, inner = len(lines), column + 1 + draw(st.integers(1, 3))
            for key, value in node.items():
                write(value, inner, key + ":")
            lines[start] = " " * column + "-" + lines[start][column + 1 :]
            return
        lines.append(" " * column + lead + draw(st.sampled_from(["", "", " # c", "  "])))
        inner = column + step()
        if isinstance(node, list):
            if lead != "-" and draw(st.booleans()):
                inner = column  # the indentless list under a key
            for item in node:
                write(item, inner, "-")
        else:
            for key, value in node.items():
                write(value, inner, key + ":")

    tree = draw(st.dictionaries(st.sampled_from(["a", "b", "1", "yes", "'q'"]), _TREES, min_size=1, max_size=3))
    for key, value in tree.items():
        write(value, 0, key + ":")
    if draw(st.integers(0, 3)) == 0:
        where = draw(st.integers(0, len(lines) - 1))
        lines[where] = draw(st.sampled_from([" ", ""])) + lines[where][draw(st.integers(0, 1)) :]
    if draw(st.integers(0, 3)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(_LINES))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


def _check(text: str) -> None:
    document = load_block(text)
    if document is not None:
        assert ("ok", repr([document])) == _reference(text), text
    assert _ours(text) == _reference(text), text


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_texts())
def test_generated_block_yaml_reads_as_pyyaml_reads_it(text: str) -> None:
    _check(text)


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, min_size=1, max_size=10), st.sampled_from(["", "\n"]))
@example(["k:", "- a", "- b: 1", "  c:", "  - 2", "z:"], "\n")
@example(["? a: ", "!t v"], "")  # a non-scalar key: PyYAML's error, not the inner tag's
def test_generated_lines_read_as_pyyaml_reads_them(lines: list[str], end: str) -> None:
    _check("\n".join(lines) + end)
