"""Reading one VMI manifest file (YAML or JSON) and the env file beside it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from handler.baremetal.yaml_loader import load_documents
from handler.core.env_text import parse_env_text
from handler.core.refusal import Refusal, Refused

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
ENV_SUFFIX = ".env"
# uid for manifests that carry none: stable per namespace/name, so the domain UUID is too.
_UID_NAMESPACE = uuid.UUID("0b7f3c1e-5a2d-4c6b-9e51-6f0d2a9c8e47")


def is_manifest(path: Path) -> bool:
    name = path.name
    return path.suffix in MANIFEST_SUFFIXES and not name.startswith(".") and not name.endswith("~")


def env_path_for(manifest: Path) -> Path:
    return manifest.with_suffix(ENV_SUFFIX)


def default_uid(namespace: str, name: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, f"{namespace}/{name}"))


def load_manifest(path: Path) -> Any:
    """The parsed document, or Refused with a one-line reason naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _unreadable(path, f"cannot be read ({error.__class__.__name__}: {error})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        documents = [doc for doc in load_documents(text) if doc is not None]
    except (ValueError, yaml.YAMLError) as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise _unreadable(path, f"is not valid YAML/JSON{at}") from None
    if len(documents) != 1:
        raise _unreadable(path, f"holds {len(documents)} documents", "put exactly one VMI in each file")
    return documents[0]


def load_env(path: Path) -> dict[str, str] | None:
    """The device environment beside a manifest; None when there is no env file."""
    env_file = env_path_for(path)
    try:
        text = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise _unreadable(env_file, f"cannot be read ({error})") from None
    return parse_env_text(text, env_file.name)


def _unreadable(path: Path, problem: str, fix: str = "fix the file; the agent retries when it changes") -> Refused:
    return Refused(Refusal("InvalidManifest", path.name, problem, fix))
