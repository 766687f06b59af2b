"""Write a cloud-init ISO (ISO 9660 with Rock Ridge and Joliet, so names keep their case and
dashes) with pycdlib: pure Python, so user data is only ever bytes handed to a library."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pycdlib

from handler.core.cloudinit_data import IsoContent


def write_iso(content: IsoContent, dest: Path) -> None:
    """Write atomically: a half-written ISO never sits at ``dest``. The file is mode 0600."""
    iso = pycdlib.PyCdlib()
    # Level 4 allows the lower-case label cloud-init looks for (cidata, config-2).
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=content.label)
    made: set[str] = set()
    for path, data in content.files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/" + "/".join(parts[:depth])
            if folder not in made:
                iso.add_directory(folder, rr_name=parts[depth - 1], joliet_path=folder)
                made.add(folder)
        iso.add_fp(io.BytesIO(data), len(data), "/" + path, rr_name=parts[-1], joliet_path="/" + path)
    temporary = dest.with_name(dest.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)  # no fsync: the ISO is rebuilt before every define or start
    finally:
        iso.close()
    temporary.replace(dest)
