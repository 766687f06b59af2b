"""The resource types the fake apiserver serves, and their discovery documents.

A ``ResourceType`` says everything the store and the HTTP layer need to know about
one (group, version, plural): how to address it, whether it follows custom-resource
rules (apiextensions) or built-in ones, whether it has a ``/status`` subresource,
which field selectors it accepts, and how its objects convert to and from the
shared storage form (only events use that: ``events.k8s.io/v1`` and core ``v1``
events are two views of one stored object, as in a real cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import events

Obj = dict[str, Any]
StorageKey = tuple[str, str]  # (group, plural) of the storage that holds the objects

_METADATA_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def _identity(obj: Obj) -> Obj:
    return obj


def _no_validation(obj: Obj, namespace: str) -> list[str]:
    return []


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    custom: bool = False  # custom resource: apiextensions semantics (no strategic merge, RV required on PUT, ...)
    status_subresource: bool = False
    has_generation: bool = False
    return_deleted_object: bool = False  # DELETE answers with the object (True) or with a Status (False)
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    field_labels: frozenset[str] = _METADATA_FIELDS
    storage: StorageKey | None = None  # default: (group, plural)
    to_storage: Callable[[Obj], Obj] = field(default=_identity, compare=False)
    from_storage: Callable[[Obj], Obj] = field(default=_identity, compare=False)
    validate_create: Callable[[Obj, str], list[str]] = field(default=_no_validation, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> StorageKey:
        return self.storage or (self.group, self.plural)

    @property
    def group_resource(self) -> str:
        """``plural.group`` as the real server spells it in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def discovery_entries(self) -> list[Obj]:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        main: Obj = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        if self.status_subresource:
            out.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


POD_FIELD_LABELS = _METADATA_FIELDS | {
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
}


def default_resources(
    *, vmi_status_subresource: bool = False, kubevirt_status_subresource: bool = True
) -> list[ResourceType]:
    """The served resources. KubeVirt's VMI CRD declares no status subresource; its KubeVirt CRD does."""
    return [
        ResourceType(
            "kubevirt.io",
            "v1",
            "virtualmachineinstances",
            "VirtualMachineInstance",
            "virtualmachineinstance",
            custom=True,
            status_subresource=vmi_status_subresource,
            has_generation=True,
            return_deleted_object=True,
            short_names=("vmi", "vmis"),
            categories=("all",),
        ),
        _vmi_v1alpha3(vmi_status_subresource),
        ResourceType(
            "kubevirt.io",
            "v1",
            "kubevirts",
            "KubeVirt",
            "kubevirt",
            custom=True,
            status_subresource=kubevirt_status_subresource,
            has_generation=True,
            return_deleted_object=True,
            short_names=("kv", "kvs"),
            categories=("all",),
        ),
        ResourceType("", "v1", "configmaps", "ConfigMap", "configmap", short_names=("cm",)),
        ResourceType("", "v1", "secrets", "Secret", "secret"),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            "customresourcedefinition",
            namespaced=False,
            has_generation=True,
            short_names=("crd", "crds"),
            field_labels=frozenset({"metadata.name"}),
        ),
        ResourceType(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfiguration",
            namespaced=False,
            has_generation=True,
            field_labels=frozenset({"metadata.name"}),
        ),
        ResourceType(
            "",
            "v1",
            "pods",
            "Pod",
            "pod",
            status_subresource=True,
            has_generation=True,
            return_deleted_object=True,
            short_names=("po",),
            categories=("all",),
            field_labels=POD_FIELD_LABELS,
        ),
        ResourceType(
            "",
            "v1",
            "events",
            "Event",
            "event",
            short_names=("ev",),
            field_labels=_METADATA_FIELDS | events.CORE_FIELD_LABELS,
            validate_create=events.validate_core,
        ),
        ResourceType(
            "apps", "v1", "deployments", "Deployment", "deployment", has_generation=True, short_names=("deploy",)
        ),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", "lease"),
        ResourceType(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            "event",
            short_names=("ev",),
            storage=("", "events"),
            to_storage=events.to_core,
            from_storage=events.from_core,
            validate_create=events.validate_events_v1,
        ),
        ResourceType(
            "",
            "v1",
            "nodes",
            "Node",
            "node",
            namespaced=False,
            status_subresource=True,
            return_deleted_object=True,
            short_names=("no",),
            field_labels=frozenset({"metadata.name", "spec.unschedulable"}),
        ),
        # Multus: a VMI's multus network names one of these (its spec.config is a CNI config).
        ResourceType(
            "k8s.cni.cncf.io",
            "v1",
            "network-attachment-definitions",
            "NetworkAttachmentDefinition",
            "network-attachment-definition",
            custom=True,
            short_names=("net-attach-def",),
        ),
    ]


def _vmi_v1alpha3(status_subresource: bool) -> ResourceType:
    """The deprecated version of the same VMIs: one storage (v1), each version's own apiVersion on the way out."""

    def as_version(version: str) -> Callable[[Obj], Obj]:
        return lambda obj: {**obj, "apiVersion": f"kubevirt.io/{version}"}

    return ResourceType(
        "kubevirt.io",
        "v1alpha3",
        "virtualmachineinstances",
        "VirtualMachineInstance",
        "virtualmachineinstance",
        custom=True,
        status_subresource=status_subresource,
        has_generation=True,
        return_deleted_object=True,
        short_names=("vmi", "vmis"),
        categories=("all",),
        storage=("kubevirt.io", "virtualmachineinstances"),
        to_storage=as_version("v1"),
        from_storage=as_version("v1alpha3"),
    )


class Registry:
    def __init__(self, resources: Iterable[ResourceType]):
        self._types = list(resources)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rt in self._types:
            if (rt.group, rt.version, rt.plural) == (group, version, plural):
                return rt
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self._types:
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def by_plural(self, plural: str, group: str | None = None) -> ResourceType:
        """For the Python test hooks: ``plural`` alone when unambiguous, else with ``group``."""
        found = [rt for rt in self._types if rt.plural == plural and (group is None or rt.group == group)]
        if len({rt.group for rt in found}) == 1:  # several versions of one resource: the storage version
            found = [rt for rt in found if rt.storage is None]
        if len(found) != 1:
            raise KeyError(f"{plural!r} (group={group!r}) matches {len(found)} resource types")
        return found[0]

    def versions_of(self, group: str) -> list[str]:
        return sorted({rt.version for rt in self._types if rt.group == group})

    # --- discovery documents -------------------------------------------------

    def api_versions(self, server_address: str) -> Obj:
        return {
            "kind": "APIVersions",
            "versions": self.versions_of(""),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }

    def api_group(self, group: str) -> Obj | None:
        versions = self.versions_of(group)
        if not group or not versions:
            return None
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def api_group_list(self) -> Obj:
        groups = sorted({rt.group for rt in self._types if rt.group})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self.api_group(g) for g in groups]}

    def api_resource_list(self, group: str, version: str) -> Obj | None:
        types = [rt for rt in self._types if (rt.group, rt.version) == (group, version)]
        if not types:
            return None
        resources = [entry for rt in types for entry in rt.discovery_entries()]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": types[0].api_version,
            "resources": resources,
        }
