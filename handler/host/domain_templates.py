"""Finding and reading the domain XML skeletons (``templates/``) for the core to render with."""

from __future__ import annotations

import os
import sys
import sysconfig
from functools import cache
from pathlib import Path

from handler.core.templates import SKELETONS, DomainTemplates

ENV_OVERRIDE = "QAT_HANDLER_TEMPLATES"
INSTALLED = ("share/qat_handler/templates", "share/qat-handler/templates")
"""Where a non-editable install puts the skeletons under its data prefix (setup.cfg's data_files;
setuptools versions differ on whether the dash survives)."""


def load_templates() -> DomainTemplates:
    """The skeletons from ``$QAT_HANDLER_TEMPLATES``, a source checkout's ``templates/``, or the
    installed data copy, whichever is found first."""
    return _load(os.environ.get(ENV_OVERRIDE) or None)


@cache
def _load(override: str | None) -> DomainTemplates:
    """Read once per override: the files are small and every agent, command and test renders with them."""
    directory = _find_templates(override)
    return DomainTemplates.of({name: (directory / name).read_text(encoding="utf-8") for name in SKELETONS})


def _find_templates(override: str | None) -> Path:
    candidates = [
        Path(override) if override else None,
        Path(__file__).resolve().parents[2] / "templates",
        # Debian's python installs data files under /usr/local (its data path), not sys.prefix (/usr).
        *(Path(prefix) / where for prefix in (sys.prefix, sysconfig.get_path("data")) for where in INSTALLED),
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "domain.xml").is_file():
            return candidate
    raise FileNotFoundError(f"domain templates not found; set {ENV_OVERRIDE} to the templates/ directory")
