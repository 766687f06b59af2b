"""Just enough OpenAPI v3 for kubectl: the index at ``/openapi/v3`` and one document per
group/version, whose PATCH operations carry ``x-kubernetes-group-version-kind``, the
``fieldValidation`` query parameter and the accepted patch types.

kubectl reads these to decide that the server validates fields itself (so it sends
``fieldValidation=Strict`` instead of validating client-side) and, for custom resources,
that ``kubectl apply`` must use a JSON merge patch. Schemas are left open.
"""

from __future__ import annotations

import hashlib

from .resources import Obj, Registry, ResourceType

_CUSTOM_PATCHES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")
_BUILT_IN_PATCHES = (*_CUSTOM_PATCHES, "application/strategic-merge-patch+json")


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(registry: Registry) -> Obj:
    paths = {}
    for group, version in sorted({(rt.group, rt.version) for rt in registry}):
        key = _gv_key(group, version)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def document(registry: Registry, group: str, version: str) -> Obj | None:
    types = [rt for rt in registry if (rt.group, rt.version) == (group, version)]
    if not types:
        return None
    paths = {}
    for rt in types:
        paths[_item_path(rt)] = {"patch": _patch_operation(rt)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-fake"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _item_path(rt: ResourceType) -> str:
    base = "/" + _gv_key(rt.group, rt.version)
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    return f"{base}{scope}/{rt.plural}/{{name}}"


def _patch_operation(rt: ResourceType) -> Obj:
    accepted = _CUSTOM_PATCHES if rt.custom else _BUILT_IN_PATCHES
    return {
        "operationId": f"patch{rt.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in ("dryRun", "fieldManager", "fieldValidation", "force")
        ],
        "requestBody": {"content": {media: {"schema": {"type": "object"}} for media in accepted}, "required": True},
        "responses": {"200": {"description": "OK"}},
    }
