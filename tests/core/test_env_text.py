"""``KEY=VALUE`` env files, the bare-metal stand-in for a pod's environment."""

from __future__ import annotations

import pytest

from handler.core.env_text import parse_env_text
from handler.core.refusal import Refused


@pytest.mark.parametrize(
    ("text", "env"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param("QAT0=0000:3d:01.1\n", {"QAT0": "0000:3d:01.1"}, id="one"),
        pytest.param("# comment\n\n   \nQAT0=a\n  # indented comment\n", {"QAT0": "a"}, id="comments-and-blanks"),
        pytest.param("export QAT0=a\nexport  QAT1=b", {"QAT0": "a", "QAT1": "b"}, id="export-prefix"),
        pytest.param('A="x,y"\nB=\'z\'\nC=""', {"A": "x,y", "B": "z", "C": ""}, id="quotes-dropped"),
        pytest.param('A="unbalanced\nB=\'x"', {"A": '"unbalanced', "B": "'x\""}, id="unbalanced-quotes-kept"),
        pytest.param("  A = spaced  \n", {"A": "spaced"}, id="spaces-around"),
        pytest.param("A=b=c", {"A": "b=c"}, id="equals-in-value"),
        pytest.param("A=", {"A": ""}, id="empty-value"),
        pytest.param("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}, id="crlf"),
        pytest.param(
            "PCI_RESOURCE_INTEL_COM_QAT-VF_V2=0000:3d:01.1",
            {"PCI_RESOURCE_INTEL_COM_QAT-VF_V2": "0000:3d:01.1"},
            id="dash-in-name-as-kubevirt-makes-it",
        ),
        pytest.param("_A1=x", {"_A1": "x"}, id="underscore-first"),
    ],
)
def test_env_text_parses(text: str, env: dict[str, str]) -> None:
    assert parse_env_text(text, "vm.env") == env


@pytest.mark.parametrize(
    ("text", "line_number", "raw"),
    [
        pytest.param("QAT0 0000:3d:01.1", 1, "QAT0 0000:3d:01.1", id="no-equals"),
        pytest.param("A=1\n\n=value", 3, "=value", id="no-name"),
        pytest.param("A=1\n1A=x", 2, "1A=x", id="digit-first"),
        pytest.param("MY VAR=x", 1, "MY VAR=x", id="space-in-name"),
        pytest.param("export", 1, "export", id="bare-export"),
    ],
)
def test_env_text_refuses_a_bad_line(text: str, line_number: int, raw: str) -> None:
    with pytest.raises(Refused) as caught:
        parse_env_text(text, "vm.env")
    refusal = caught.value.refusal
    assert refusal.reason == "DeviceEnvInvalid"
    assert refusal.subject == f"vm.env line {line_number}"
    assert repr(raw) in refusal.problem
    assert "\n" not in refusal.line()


def test_env_text_refuses_a_variable_set_twice() -> None:
    with pytest.raises(Refused) as caught:
        parse_env_text("QAT0=0000:3d:01.1\nQAT1=0000:3d:01.2\nQAT0=0000:3d:01.3", "vm.env")
    refusal = caught.value.refusal
    assert (refusal.reason, refusal.subject) == ("DeviceEnvInvalid", "vm.env line 3")
    assert "QAT0" in refusal.problem
