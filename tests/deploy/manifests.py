"""Loading deploy/ for the tests: every YAML document, and lookups into them."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = DEPLOY / "examples"
NOT_KUBERNETES = (DEPLOY / "baremetal",)
"""Folders under deploy/ for bare-metal installs: their files are not Kubernetes manifests."""

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Doc:
    path: Path
    index: int
    body: Obj

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(REPO)}[{self.index}] {self.kind}/{self.name}"


def manifest_paths() -> list[Path]:
    """Every YAML file under deploy/ but the bare-metal folders (bootstrap.sh, README.md are not YAML)."""
    return sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and not any(p.is_relative_to(d) for d in NOT_KUBERNETES)
    )


def load_all() -> list[Doc]:
    docs = []
    for path in manifest_paths():
        for index, body in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if body is not None:
                assert isinstance(body, dict), f"{path}[{index}] is not a mapping"
                docs.append(Doc(path, index, body))
    return docs


def one(kind: str, name: str | None = None, under: Path = DEPLOY) -> Doc:
    """The single document of this kind (and name) under a folder; fails if there are 0 or 2+."""
    found = [
        d for d in load_all() if d.kind == kind and (name is None or d.name == name) and d.path.is_relative_to(under)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} under {under}, found {[d.label for d in found]}"
    return found[0]


def pod_spec(doc: Doc) -> Obj:
    spec = doc.body["spec"]
    return spec["template"]["spec"] if doc.kind in ("DaemonSet", "Deployment") else spec


def containers(spec: Obj) -> list[Obj]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def mounts(container: Obj, spec: Obj) -> dict[str, tuple[Obj, Obj]]:
    """mountPath -> (volumeMount, volume) of a container."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container.get("volumeMounts") or []}


def container_port(container: Obj, port: int | str) -> int:
    """A probe's port as a number: named ports resolve through the container's ports."""
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    assert port in named, f"probe port {port!r} is not a named port of container {container['name']}"
    return int(named[port])


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a document, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def cli_args(container: Obj, env: dict[str, str] | None = None) -> argparse.Namespace:
    """The container's command line parsed by the real qat-handler CLI, under ``env``.

    The CLI reads its defaults (NODE_NAME, VMI_*, POD_UID, QAT_HANDLER_SLOT) from the
    environment when the parser is built, so ``env`` replaces os.environ meanwhile.
    """
    import os
    from unittest import mock

    from handler.cli.main import build_parser

    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:1] == ["qat-handler"], f"container {container['name']} does not run qat-handler: {argv}"
    with mock.patch.dict(os.environ, env or {}, clear=True):
        return build_parser().parse_args(argv[1:])
