"""Where the domain XML skeletons live and how they are loaded (once, then copied)."""

from __future__ import annotations

import copy
import os
import sys
import sysconfig
from functools import cache
from pathlib import Path

from lxml import etree

ENV_OVERRIDE = "QAT_HANDLER_TEMPLATES"


def templates_dir() -> Path:
    """The repository's ``templates/`` for a source checkout, else the installed data copy."""
    return _find_templates(os.environ.get(ENV_OVERRIDE) or None)


@cache
def _find_templates(override: str | None) -> Path:
    """Looked up once per override: every rendered domain needs it, and the lookup resolves paths."""
    candidates = [
        Path(override) if override else None,
        Path(__file__).resolve().parents[2] / "templates",
        Path(sys.prefix) / "share" / "qat-handler" / "templates",
        # Debian's python installs data files under /usr/local, not sys.prefix (/usr).
        Path(sysconfig.get_path("data")) / "share" / "qat-handler" / "templates",
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "domain.xml").is_file():
            return candidate
    raise FileNotFoundError(f"domain templates not found; set {ENV_OVERRIDE} to the templates/ directory")


@cache
def _parsed(name: str, directory: str) -> etree._Element:
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, resolve_entities=False)
    return etree.parse(str(Path(directory) / name), parser).getroot()


def template(name: str) -> etree._Element:
    """A fresh copy of ``templates/<name>`` that the caller may change freely."""
    return copy.deepcopy(_parsed(name, str(templates_dir())))
