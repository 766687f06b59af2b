"""ObjectMeta validation: the checks a node agent can fail on a real server.

Names must be DNS-1123 subdomains, label keys/values and annotation keys must be
well formed (a PCI address such as ``0000:3d:01.0`` is *not* a valid label value),
finalizers must be qualified names, and metadata maps must hold strings.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiError, bad_request, invalid
from .resources import ResourceType
from .selectors import valid_label_key, valid_label_value

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def valid_name(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def _string_map(meta: dict[str, Any], field: str) -> dict[str, str]:
    value = meta.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_request(
            f"json: cannot unmarshal {field} into Go struct field ObjectMeta.metadata.{field} of type map[string]string"
        )
    return value


def check_metadata(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Raise 400 for wrongly typed metadata and 422 (with every cause) for invalid values."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise bad_request("Object 'metadata' is missing or is not an object")
    name = meta.get("name") or ""
    causes: list[str] = []
    if not isinstance(name, str) or not valid_name(name):
        causes.append(
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower "
            "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    for key, value in _string_map(meta, "labels").items():
        if not valid_label_key(key):
            causes.append(
                f"metadata.labels: Invalid value: {key!r}: name part must consist of alphanumeric "
                "characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            )
        if not valid_label_value(value):
            causes.append(
                f"metadata.labels: Invalid value: {value!r}: a valid label must be an empty string or "
                "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character"
            )
    annotations = _string_map(meta, "annotations")
    for key in annotations:
        if not valid_label_key(key):
            causes.append(
                f"metadata.annotations: Invalid value: {key!r}: name part must consist of alphanumeric "
                "characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            )
    if sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATIONS_BYTES:
        causes.append("metadata.annotations: Too long: must have at most 262144 bytes")
    finalizers = meta.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise bad_request(
            "json: cannot unmarshal finalizers into Go struct field ObjectMeta.metadata.finalizers of type []string"
        )
    for fin in finalizers:
        if not valid_label_key(fin):
            causes.append(
                f"metadata.finalizers: Invalid value: {fin!r}: a qualified name must consist of "
                "alphanumeric characters, '-', '_' or '.'"
            )
        elif not rt.custom and "/" not in fin and fin not in _STANDARD_FINALIZERS:
            causes.append(
                f"metadata.finalizers: Invalid value: {fin!r}: name is neither a standard finalizer name "
                "nor is it fully qualified"
            )
    if causes:
        raise invalid(rt, name if isinstance(name, str) else "", causes)


def check_type_meta(rt: ResourceType, obj: Any) -> None:
    """Custom resources must carry their apiVersion/kind; built-in bodies may omit them (the URL decides)."""
    if not isinstance(obj, dict):
        raise bad_request("the request body must be a JSON object")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if rt.custom and not kind:
        raise bad_request("Object 'Kind' is missing in the request body")
    if rt.custom and not api_version:
        raise bad_request("Object 'apiVersion' is missing in the request body")
    if api_version and api_version != rt.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")


def invalid_because(rt: ResourceType, name: str, *causes: str) -> ApiError:
    return invalid(rt, name, list(causes))
