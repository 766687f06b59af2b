"""The VirtualMachineInstance CRD, generated from the field table in ``vmi_schema``.

One source of truth: the parser accepts exactly the keys of that table, and the CRD's
structural OpenAPI schema lists exactly the same ones, so a field the stack would refuse on
the node is unknown to the API server too (``kubectl apply`` reports it at once). Pure data
in, a plain dict out; ``qat-handler crd`` writes it to ``deploy/crds/``.
"""

from __future__ import annotations

from typing import Any

from handler.core.vmi_parse import API_VERSIONS, KIND
from handler.core.vmi_schema import SPEC, Node

GROUP = "kubevirt.io"
PLURAL = "virtualmachineinstances"
CRD_NAME = f"{PLURAL}.{GROUP}"
STORAGE_VERSION = API_VERSIONS[0].split("/")[1]
DEPRECATED_VERSIONS = {"v1alpha3": "kubevirt.io/v1alpha3 is deprecated; use kubevirt.io/v1"}

Schema = dict[str, Any]

# As KubeVirt's own CRD shows a VMI in `kubectl get vmi`.
PRINTER_COLUMNS: tuple[Schema, ...] = (
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "IP", "type": "string", "jsonPath": ".status.interfaces[0].ipAddress"},
    {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeName"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
)


def openapi(node: Node) -> Schema:
    """One table node as a structural OpenAPI v3 schema."""
    schema = _shape(node)
    if node.description:
        schema["description"] = node.description
    if node.enum:
        schema["enum"] = list(node.enum)
    if node.minimum is not None:
        schema["minimum"] = node.minimum
    if node.maximum is not None:
        schema["maximum"] = node.maximum
    return schema


def _shape(node: Node) -> Schema:
    if node.kind == "object":
        schema: Schema = {"type": "object", "properties": {name: openapi(c) for name, c in node.children.items()}}
        if node.required:
            schema["required"] = list(node.required)
        return schema
    if node.kind == "array":
        assert node.items is not None, "an array node needs items"
        return {"type": "array", "items": openapi(node.items)}
    if node.kind == "map":
        assert node.items is not None, "a map node needs items"
        return {"type": "object", "additionalProperties": openapi(node.items)}
    if node.kind == "quantity":
        return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    if node.kind == "free":
        # Scheduling fields only the scheduler reads: kept as written, never pruned.
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"type": node.kind}


def vmi_schema() -> Schema:
    return {
        "type": "object",
        "description": "A virtual machine instance, as KubeVirt's kubevirt.io API defines it (QAT subset).",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi(SPEC),
            # Written by the agent and the controller; KubeVirt's CRD keeps it open as well.
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "required": ["spec"],
    }


def _version(api_version: str) -> Schema:
    name = api_version.split("/")[1]
    version: Schema = {"name": name, "served": True, "storage": name == STORAGE_VERSION}
    if name in DEPRECATED_VERSIONS:
        version["deprecated"] = True
        version["deprecationWarning"] = DEPRECATED_VERSIONS[name]
    # No `subresources`: KubeVirt's VMI has no status subresource, and the agent patches status
    # through the main resource.
    version["additionalPrinterColumns"] = [dict(column) for column in PRINTER_COLUMNS]
    version["schema"] = {"openAPIV3Schema": vmi_schema()}
    return version


def vmi_crd() -> Schema:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition for virtualmachineinstances.kubevirt.io."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "qat-handler"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["vmi", "vmis"],
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [_version(api_version) for api_version in API_VERSIONS],
        },
    }


def schema_paths(schema: Schema, prefix: str = "spec") -> list[str]:
    """Every path in a generated schema, written as ``vmi_schema.leaf_paths`` writes them."""
    paths = [prefix]
    for name, child in (schema.get("properties") or {}).items():
        paths.extend(schema_paths(child, f"{prefix}.{name}"))
    if "items" in schema:
        paths.extend(schema_paths(schema["items"], f"{prefix}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        paths.extend(schema_paths(schema["additionalProperties"], f"{prefix}[]"))
    return paths
