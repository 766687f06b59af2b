"""Read an OCI image layout directory: which images it names, and one disk file out of an image.

Only the one regular file asked for is written; nothing else from the layers reaches the disk,
so a hostile image cannot place links or device nodes on the host.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

REF_NAME = "org.opencontainers.image.ref.name"
DISK_SUFFIXES = (".img", ".qcow2", ".raw")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


class LayoutError(Exception):
    """The layout or image is not usable; the message says why, in a few words."""


def tagged(layout: Path, name: str) -> bool:
    """Whether ``layout``'s index names an image ``name``."""
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError):
        return False
    return any(entry.get("annotations", {}).get(REF_NAME) == name for entry in index.get("manifests", []))


def manifest_digest(layout: Path, name: str = "") -> str:
    """The digest of the image manifest named ``name`` (or the only one)."""
    entries = _read_json(layout / "index.json").get("manifests", [])
    if name:
        entries = [e for e in entries if e.get("annotations", {}).get(REF_NAME) == name]
    if len(entries) != 1:
        raise LayoutError(f"the layout holds {len(entries)} images named {name or '(any)'}")
    entry = entries[0]
    if entry.get("mediaType") in _INDEX_TYPES:  # a multi-platform index: take linux/amd64
        nested = _read_json(_blob(layout, entry.get("digest"))).get("manifests", [])
        entry = next((e for e in nested if e.get("platform", {}).get("architecture") == "amd64"), {})
    digest = entry.get("digest")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise LayoutError("the image index has no valid manifest digest")
    return digest


def extract_disk(layout: Path, digest: str, inner: str | None, dest: Path) -> str:
    """Write the image's disk file to ``dest``; returns its path inside the image.

    ``inner`` None: the single ``/disk/*.img|*.qcow2|*.raw`` file. Later layers win.
    """
    manifest = _read_json(_blob(layout, digest))
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise LayoutError("the image manifest lists no layers")
    wanted = inner.lstrip("/") if inner else None
    found: tuple[int, str] | None = None
    for position, layer in enumerate(layers):
        for name in _layer_files(_blob(layout, layer.get("digest"))):
            if (wanted is not None and name == wanted) or (wanted is None and _is_disk(name)):
                if found is not None and wanted is None and found[1] != name:
                    raise LayoutError("the image holds more than one disk under /disk; set containerDisk.path")
                found = (position, name)
    if found is None:
        raise LayoutError(f"the image has no {inner or '/disk/*.img or *.qcow2'}")
    _copy_member(_blob(layout, layers[found[0]].get("digest")), found[1], dest)
    return "/" + found[1]


def _is_disk(name: str) -> bool:
    return name.startswith("disk/") and name.count("/") == 1 and name.endswith(DISK_SUFFIXES)


def _layer_files(blob: Path) -> list[str]:
    try:
        with tarfile.open(blob, mode="r:*") as tar:
            return [m.name.removeprefix("./").lstrip("/") for m in tar if m.isfile()]
    except (OSError, tarfile.TarError, EOFError) as error:
        raise LayoutError(f"a layer cannot be read ({error})") from None


def _copy_member(blob: Path, name: str, dest: Path) -> None:
    try:
        with tarfile.open(blob, mode="r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.removeprefix("./").lstrip("/") == name:
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, dest.open("wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    return
    except (OSError, tarfile.TarError, EOFError) as error:
        raise LayoutError(f"the disk cannot be read from its layer ({error})") from None
    raise LayoutError(f"/{name} vanished from its layer")


def _blob(layout: Path, digest: Any) -> Path:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise LayoutError(f"bad digest {digest!r} in the image")
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    if not path.is_file():
        raise LayoutError(f"blob {digest[:19]} is missing")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise LayoutError(f"{path.name} cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise LayoutError(f"{path.name} is not a JSON object")
    return data
