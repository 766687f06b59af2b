"""A refusal: why the agent will not act on an input, and what the operator should do about it.

The same value is shown in status conditions, Events and log lines, so every refusal
renders to one line that names the subject (object, field or device), the problem and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """CamelCase machine reason, used as the condition/Event reason (e.g. ``InvalidSpec``)."""
    subject: str
    """What is wrong: a field path, an environment variable, a BDF or a file."""
    problem: str
    """What is wrong with it, as a predicate of the subject ("is not a PCI address")."""
    fix: str
    """What the operator should change."""

    def line(self) -> str:
        return f"{self.subject} {self.problem}; fix: {self.fix}"


class Refused(Exception):
    """Raised inside the core's parsers; callers catch it and carry the Refusal on as a value."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.line())
        self.refusal = refusal
