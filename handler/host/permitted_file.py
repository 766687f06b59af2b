"""Loading the operator's permitted-devices list from a YAML or JSON file."""

from __future__ import annotations

from pathlib import Path

import yaml

from handler.core.permitted_devices import PermitMode, PermittedDevices, parse_permitted_devices
from handler.core.refusal import Refusal, Refused


def load_permitted_devices(path: Path | None, mode: PermitMode = PermitMode.EXTEND) -> PermittedDevices:
    """The built-in QAT table when ``path`` is None; else the file's entries, extending or replacing it.

    The file holds KubeVirt's ``permittedHostDevices`` object, bare or under that key.
    """
    if path is None:
        return PermittedDevices((), mode)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise Refused(
            Refusal(
                "InvalidPermittedDevices",
                str(path),
                f"cannot be read ({error.__class__.__name__})",
                "give a YAML file with permittedHostDevices.pciHostDevices entries",
            )
        ) from None
    if isinstance(document, dict) and "permittedHostDevices" in document:
        document = document["permittedHostDevices"]
    return parse_permitted_devices(document, mode, source=f"{path.name} permittedHostDevices")
