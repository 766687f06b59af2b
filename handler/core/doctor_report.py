"""The preflight report: checks in the spirit of virt-host-validate, as text or JSON.

A failed *required* check means the node cannot pass devices through (exit status 1);
a failed optional one is a warning (some VFs, or some capacity, are lost).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

PASS, FAIL, WARN = "✔", "✘", "⚠"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    """What was checked, e.g. ``IOMMU enabled`` or ``VF 0000:3d:01.0``."""
    ok: bool
    required: bool
    detail: str
    """What was found."""
    fix: str = ""
    """What to do when not ok."""

    @property
    def mark(self) -> str:
        if self.ok:
            return PASS
        return FAIL if self.required else WARN


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks if check.required)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_text(self) -> str:
        lines: list[str] = []
        for check in self.checks:
            lines.append(f"{check.mark} {check.name}: {check.detail}")
            if not check.ok and check.fix:
                lines.append(f"    fix: {check.fix}")
        failed = sum(1 for check in self.checks if not check.ok and check.required)
        warned = sum(1 for check in self.checks if not check.ok and not check.required)
        verdict = "ready for QAT passthrough" if self.ok else "NOT ready for QAT passthrough"
        lines.append(f"{verdict}: {failed} required check(s) failed, {warned} warning(s)")
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        body = {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
