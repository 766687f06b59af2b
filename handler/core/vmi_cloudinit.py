"""``spec.volumes[].cloudInitNoCloud`` and ``.cloudInitConfigDrive`` into a CloudInit source.

Inline data is capped at INLINE_LIMIT_BYTES as written (KubeVirt's cap); larger data belongs
in a Secret (``secretRef`` / ``networkDataSecretRef``), which is read in Kubernetes only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from handler.core.disk_sources import INLINE_LIMIT_BYTES, CloudInit
from handler.core.fields import invalid, mapping, only_known, string
from handler.core.vmi_schema import known

FLAVOURS = {"cloudInitNoCloud": "noCloud", "cloudInitConfigDrive": "configDrive"}

# (plain field, base64 field, secret field) for each of the two payloads.
_USER = ("userData", "userDataBase64", "secretRef")
_NETWORK = ("networkData", "networkDataBase64", "networkDataSecretRef")


def parse_cloud_init(field: str, value: Any, path: str) -> CloudInit:
    """``path`` is the volume's path plus the source key, e.g. ``spec.volumes[1].cloudInitNoCloud``."""
    source = mapping(value, path)
    only_known(source, path, known(f"spec.volumes[].{field}"))
    user, user_secret = _payload(source, path, _USER)
    network, network_secret = _payload(source, path, _NETWORK)
    if user is None and user_secret is None and network is None and network_secret is None:
        raise invalid(path, "has no user data", "set userData, userDataBase64 or secretRef")
    return CloudInit(FLAVOURS[field], user, network, user_secret, network_secret)


def _payload(source: Mapping[str, Any], path: str, fields: tuple[str, str, str]) -> tuple[bytes | None, str | None]:
    plain, _encoded, secret = fields
    given = [name for name in fields if source.get(name) not in (None, "", {})]
    if len(given) > 1:
        raise invalid(f"{path}.{given[1]}", f"is set together with {given[0]}", "keep only one of them")
    if not given:
        return None, None
    name = given[0]
    if name == secret:
        ref = mapping(source[name], f"{path}.{name}")
        only_known(ref, f"{path}.{name}", ("name",))
        return None, string(ref.get("name"), f"{path}.{name}.name")
    text = string(source[name], f"{path}.{name}")
    if len(text.encode()) > INLINE_LIMIT_BYTES:
        raise invalid(
            f"{path}.{name}",
            f"is {len(text.encode())} bytes, over the {INLINE_LIMIT_BYTES}-byte inline limit",
            f"put the data in a Secret and use {secret}",
        )
    if name == plain:
        return text.encode(), None
    try:
        return base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True), None
    except (binascii.Error, ValueError):
        raise invalid(f"{path}.{name}", "is not valid base64", f"encode it with base64, or use {plain}") from None
