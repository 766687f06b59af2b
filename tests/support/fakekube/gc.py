"""The garbage collector: background deletion by ``metadata.ownerReferences``.

As kube-controller-manager's garbage collector does with the default (background)
propagation: once every owner named in an object's ``ownerReferences`` is gone (no
object with that uid exists any more), the object is deleted; an object that still has
an owner left only loses the references to the gone ones. An owner that is merely being
deleted (``deletionTimestamp`` set, finalizers pending) still exists, so its dependents
stay until it is really gone. Deleting a dependent goes through the store's own delete,
so its finalizers and graceful deletion (pods) apply as to any other delete.

Not modelled: foreground deletion and orphaning (``propagationPolicy`` Foreground and
Orphan act like Background), and the owner-kind checks of the real collector.
"""

from __future__ import annotations

import contextlib

from . import patch as patches
from .errors import ApiError
from .resources import Obj, Registry, ResourceType
from .store import Store


class GarbageCollector:
    def __init__(self, store: Store, registry: Registry) -> None:
        self._store = store
        # One resource type per storage (two views of one storage hold the same objects).
        seen: dict[tuple[str, str], ResourceType] = {}
        for rt in registry:
            seen.setdefault(rt.storage_key, rt)
        self._types = list(seen.values())
        self.deleted: list[tuple[str, str, str]] = []
        """(plural, namespace, name) of every object it deleted, oldest first."""

    def sync(self) -> None:
        """One pass over every stored object (cheap enough for a fake: tests hold few objects)."""
        with self._store.cond:
            listed = [(rt, obj) for rt in self._types for obj in self._store.list_objects(rt, None)[0]]
        alive = {obj["metadata"]["uid"] for _, obj in listed}
        for rt, obj in listed:
            refs = obj["metadata"].get("ownerReferences") or []
            gone = [ref for ref in refs if ref.get("uid") not in alive]
            if gone and not obj["metadata"].get("deletionTimestamp"):
                self._collect(rt, obj, refs, gone)

    def _collect(self, rt: ResourceType, obj: Obj, refs: list[Obj], gone: list[Obj]) -> None:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        # The object may have changed or gone since the pass listed it: that write or delete wins.
        with contextlib.suppress(ApiError):
            if len(gone) == len(refs):
                options = {"propagationPolicy": "Background", "preconditions": {"uid": meta["uid"]}}
                self._store.delete(rt, ns, name, options)
                self.deleted.append((rt.plural, ns, name))
            else:
                kept = [ref for ref in refs if ref not in gone]
                body = {"metadata": {"ownerReferences": kept, "resourceVersion": meta["resourceVersion"]}}
                self._store.patch(rt, ns, name, patches.MERGE, body)
