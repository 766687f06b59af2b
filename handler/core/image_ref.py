"""containerDisk image references: what the agent accepts, and the skopeo source each maps to.

A reference is data: it is checked against a strict pattern, goes to skopeo as one argv item
with its transport prefix (so it can never be read as an option) and never reaches a shell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from handler.core.fields import invalid

_REGISTRY_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@+]{0,511}$")
_LOCAL_PATH = re.compile(r"^/[A-Za-z0-9._\-/+]{0,1023}$")
_LOCAL_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@+]{0,255}$")
LOCAL_TRANSPORTS = ("oci", "oci-archive")


@dataclass(frozen=True, slots=True)
class ImageSource:
    transport: str
    """``docker`` (a registry), ``oci`` (a layout directory) or ``oci-archive`` (a tar file)."""
    location: str
    """The reference, or the absolute path of the layout or archive."""
    tag: str = ""
    """For a layout or archive: the image's name inside it; empty for the only one."""

    def skopeo(self) -> str:
        """The source as one skopeo argument."""
        if self.transport == "docker":
            return f"docker://{self.location}"
        return f"{self.transport}:{self.location}" + (f":{self.tag}" if self.tag else "")


def parse_image(image: str, path: str) -> ImageSource:
    """``oci:/dir[:name]``, ``oci-archive:/file.tar[:name]`` or a registry reference."""
    transport, colon, rest = image.partition(":")
    if colon and transport in LOCAL_TRANSPORTS:
        location, _, tag = rest.partition(":")
        if not _LOCAL_PATH.match(location) or (tag and not _LOCAL_TAG.match(tag)):
            raise invalid(
                path, f"{image!r} is not an {transport}: reference", f"write {transport}:/absolute/path[:name]"
            )
        return ImageSource(transport, location, tag)
    if not _REGISTRY_REF.match(image) or "//" in image:
        raise invalid(path, f"{image!r} is not an image reference", "write e.g. example.org/disks/fedora:39")
    return ImageSource("docker", image)
