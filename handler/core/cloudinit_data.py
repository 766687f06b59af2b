"""What goes on a cloud-init ISO: its volume label and its files, as data.

NoCloud (label ``cidata``): ``meta-data``, ``user-data`` and, when given, ``network-config``.
ConfigDrive (label ``config-2``): OpenStack's ``openstack/latest/`` layout.
The instance id is the VMI uid, so cloud-init runs once per VMI and again for a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from handler.core.disk_sources import CloudInit


@dataclass(frozen=True, slots=True)
class IsoContent:
    label: str
    files: tuple[tuple[str, bytes], ...]
    """(path inside the ISO, content), in a fixed order so the same input makes the same ISO."""


def iso_content(source: CloudInit, uid: str, name: str, user: bytes | None, network: bytes | None) -> IsoContent:
    """``user`` and ``network`` are the payloads after any Secret was read."""
    if source.flavour == "configDrive":
        return _config_drive(uid, name, user, network)
    return _no_cloud(uid, name, user, network)


def _no_cloud(uid: str, name: str, user: bytes | None, network: bytes | None) -> IsoContent:
    # JSON is YAML too, and quotes whatever it must.
    meta = "".join(f"{key}: {json.dumps(value)}\n" for key, value in (("instance-id", uid), ("local-hostname", name)))
    files = [("meta-data", meta.encode()), ("user-data", user or b"")]
    if network is not None:
        files.append(("network-config", network))
    return IsoContent("cidata", tuple(files))


def _config_drive(uid: str, name: str, user: bytes | None, network: bytes | None) -> IsoContent:
    meta = {"uuid": uid, "hostname": name, "name": name, "launch_index": 0}
    files = [("openstack/latest/meta_data.json", (json.dumps(meta, sort_keys=True) + "\n").encode())]
    if user is not None:
        files.append(("openstack/latest/user_data", user))
    if network is not None:
        files.append(("openstack/latest/network_data.json", network))
    return IsoContent("config-2", tuple(files))
