"""The object store: etcd-like resource versions, a bounded change history, and
per-watcher queues.

One global counter gives every write its ``resourceVersion`` (like etcd's revision).
Every write is appended to the history (what a new watch replays from its starting
RV; ``compact()`` or the size bound forgets it, and starting before the forgotten
part is a 410) and to the queue of every open watcher of that storage (fan-out at
write time, as the real watch cache does, so compaction never breaks a live watch).

Objects are stored in storage form and never mutated after being stored: a write
replaces the dict, so history entries and queued changes are stable snapshots.
Every public method takes the ``ResourceType`` the request addressed and returns
deep copies in that type's view.
"""

from __future__ import annotations

import copy
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import patch as patches
from .errors import ApiError, already_exists, bad_request, conflict, expired, invalid, not_found, unsupported_media_type
from .resources import Obj, ResourceType, StorageKey
from .selectors import FieldSelector, LabelSelector
from .validation import check_metadata, check_type_meta

_SYSTEM_FIELDS = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
)
_NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what the real name generator draws from


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def rfc3339_in(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def _deletion_due(meta: Obj) -> bool:
    """Marked for deletion with no grace left to run (finalizers alone hold it); a graceful deletion is not."""
    return bool(meta.get("deletionTimestamp")) and not meta.get("deletionGracePeriodSeconds")


@dataclass(frozen=True)
class Change:
    rv: int
    key: StorageKey
    namespace: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj  # stored form after the change; for DELETED the last stored state carrying the deletion RV
    prev: Obj | None  # stored form before the change


@dataclass(eq=False)
class Watcher:
    rt: ResourceType
    namespace: str | None  # None: all namespaces
    queue: deque[Change] = field(default_factory=deque)
    closed: bool = False
    dropped: bool = False
    connection: Any = None  # the socket, set by the HTTP layer so the watch can be cut

    def wants(self, change: Change) -> bool:
        return change.key == self.rt.storage_key and self.namespace in (None, change.namespace)


def _with_rv(obj: Obj, rv: int) -> Obj:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


def _rv_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Store:
    def __init__(self, history_limit: int = 10_000):
        self.cond = threading.Condition(threading.RLock())
        self.rv = 0
        self.compacted_rv = 0  # changes with rv <= this are no longer in the history
        self._history_limit = history_limit
        self._history: deque[Change] = deque()
        self._objects: dict[StorageKey, dict[tuple[str, str], Obj]] = defaultdict(dict)
        self._watchers: set[Watcher] = set()
        self._paused = False
        self.grace_for: Callable[[ResourceType, Obj, Any], int] | None = None
        """Graceful deletion (set by ``graceful.py``): seconds an object lingers, marked, after a DELETE."""
        self.admit: Callable[[str, ResourceType, Obj, Obj | None, str | None], None] | None = None
        """Validating admission (set by the server): raises ApiError to refuse a create or update."""

    # --- writes ------------------------------------------------------------

    def _commit(self, type_: str, rt: ResourceType, ns: str, name: str, new: Obj | None, prev: Obj | None) -> Obj:
        self.rv += 1
        key = rt.storage_key
        if type_ == "DELETED":
            assert prev is not None
            obj = _with_rv(prev, self.rv)
            del self._objects[key][(ns, name)]
        else:
            assert new is not None
            obj = _with_rv(new, self.rv)
            self._objects[key][(ns, name)] = obj
        change = Change(self.rv, key, ns, type_, obj, prev)
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self.compacted_rv = self._history.popleft().rv
        for watcher in self._watchers:
            if watcher.wants(change):
                watcher.queue.append(change)
        self.cond.notify_all()
        return copy.deepcopy(rt.from_storage(obj))

    def _current(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self._objects[rt.storage_key].get((ns, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def create(self, rt: ResourceType, ns: str, body: Any) -> Obj:
        check_type_meta(rt, body)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("Object 'metadata' is not an object")
        if meta.get("namespace") and meta["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        with self.cond:
            if not meta.get("name") and meta.get("generateName"):
                while True:
                    meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_SUFFIX_CHARS, k=5))
                    if (ns, meta["name"]) not in self._objects[rt.storage_key]:
                        break
            if not meta.get("name"):
                raise invalid(rt, "", ["metadata.name: Required value: name or generateName is required"])
            if meta.get("resourceVersion"):
                raise ApiError(500, "resourceVersion should not be set on objects to be created")
            obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
            for system_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                meta.pop(system_field, None)
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
            if not rt.namespaced:
                meta.pop("namespace")
            if rt.has_generation:
                meta["generation"] = 1
            if rt.status_subresource:  # status is not writable through the main resource, not even on create
                obj.pop("status", None)
                if rt.kind == "Pod":
                    obj["status"] = {"phase": "Pending"}
            check_metadata(rt, obj)
            causes = rt.validate_create(obj, ns)
            if causes:
                raise invalid(rt, meta["name"], causes)
            if (ns, meta["name"]) in self._objects[rt.storage_key]:
                raise already_exists(rt, meta["name"])
            if self.admit is not None:
                self.admit("CREATE", rt, copy.deepcopy(obj), None, None)
            return self._commit("ADDED", rt, ns, meta["name"], rt.to_storage(obj), None)

    def replace(self, rt: ResourceType, ns: str, name: str, body: Any, subresource: str | None = None) -> Obj:
        check_type_meta(rt, body)
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            raise bad_request("Object 'metadata' is missing or is not an object")
        with self.cond:
            cur = self._current(rt, ns, name)
            wanted_rv = meta.get("resourceVersion")
            if not wanted_rv and rt.custom:
                raise invalid(
                    rt, name, ["metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"]
                )
            if wanted_rv and str(wanted_rv) != _rv_of(cur):
                raise conflict(rt, name)
            return self._update(rt, ns, name, cur, body, subresource)

    def patch(
        self, rt: ResourceType, ns: str, name: str, content_type: str, body: Any, subresource: str | None = None
    ) -> Obj:
        accepted = [patches.JSON_PATCH, patches.MERGE, patches.APPLY]
        if not rt.custom:
            accepted.insert(2, patches.STRATEGIC)
        if content_type not in accepted:
            raise unsupported_media_type(accepted)
        if content_type == patches.APPLY:
            raise ApiError(415, "server-side apply is not implemented by the fake apiserver", "UnsupportedMediaType")
        if content_type != patches.JSON_PATCH and not isinstance(body, dict):
            raise bad_request("a merge patch must be a JSON object")
        with self.cond:
            cur = self._current(rt, ns, name)
            view = rt.from_storage(cur)
            try:
                if content_type == patches.JSON_PATCH:
                    patched = patches.json_patch(view, body)
                elif content_type == patches.STRATEGIC:
                    patched = patches.strategic_merge_patch(view, body)
                else:
                    patched = patches.merge_patch(view, body)
            except patches.PatchError as e:
                raise ApiError(e.code, e.message) from None
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patched object has no metadata")
            wanted_rv = patched["metadata"].get("resourceVersion")
            if wanted_rv and str(wanted_rv) != _rv_of(cur):  # optimistic concurrency on request
                raise conflict(rt, name)
            return self._update(rt, ns, name, cur, patched, subresource)

    def _update(self, rt: ResourceType, ns: str, name: str, cur: Obj, wanted: Obj, subresource: str | None) -> Obj:
        cur_view = rt.from_storage(cur)
        cur_meta = cur_view["metadata"]
        wanted_meta = wanted.get("metadata") or {}
        if wanted_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({wanted_meta['name']}) does not match the name on the URL ({name})"
            )
        if wanted_meta.get("namespace", ns) not in (ns, ""):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if wanted_meta.get("uid") and wanted_meta["uid"] != cur_meta["uid"]:
            raise conflict(
                rt,
                name,
                f"Precondition failed: UID in precondition: {wanted_meta['uid']}, "
                f"UID in object meta: {cur_meta['uid']}",
            )
        if subresource == "status":  # only .status may change through /status
            new = copy.deepcopy(cur_view)
            if "status" in wanted:
                new["status"] = copy.deepcopy(wanted["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(wanted)
            if rt.status_subresource:  # the main resource ignores status changes
                if "status" in cur_view:
                    new["status"] = copy.deepcopy(cur_view["status"])
                else:
                    new.pop("status", None)
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            meta = new["metadata"] = dict(new.get("metadata") or {})
            for system_field in _SYSTEM_FIELDS:  # server-owned: always carried over from the stored object
                if system_field in cur_meta:
                    meta[system_field] = cur_meta[system_field]
                else:
                    meta.pop(system_field, None)
            check_metadata(rt, new)
            if cur_meta.get("deletionTimestamp"):
                added = [f for f in meta.get("finalizers") or [] if f not in (cur_meta.get("finalizers") or [])]
                if added:
                    raise invalid(
                        rt,
                        name,
                        [
                            f"metadata.finalizers: Forbidden: no new finalizers can be added if the "
                            f"object is being deleted, found new finalizers {added!r}"
                        ],
                    )
            if rt.has_generation and self._spec_changed(rt, cur_view, new):
                meta["generation"] = int(cur_meta.get("generation") or 0) + 1
        if new == cur_view:
            return copy.deepcopy(cur_view)  # no-op writes are not persisted: same RV, no watch event
        if _deletion_due(new["metadata"]) and not new["metadata"].get("finalizers"):
            # The last finalizer is gone: the object is deleted. Watchers get DELETED with the last stored
            # state (finalizers still listed); the writer gets back the object it sent, as from a real server.
            self._commit("DELETED", rt, ns, name, None, cur)
            return new
        if self.admit is not None:
            self.admit("UPDATE", rt, copy.deepcopy(new), copy.deepcopy(cur_view), subresource)
        return self._commit("MODIFIED", rt, ns, name, rt.to_storage(new), cur)

    @staticmethod
    def _spec_changed(rt: ResourceType, old: Obj, new: Obj) -> bool:
        """Custom resources bump generation on any change outside metadata (and outside status when the
        status subresource is enabled); built-in types here only on spec changes."""
        if not rt.custom:
            return old.get("spec") != new.get("spec")
        ignored = {"metadata", "status"} if rt.status_subresource else {"metadata"}
        return {k: v for k, v in old.items() if k not in ignored} != {k: v for k, v in new.items() if k not in ignored}

    def delete(self, rt: ResourceType, ns: str, name: str, options: Any = None) -> Obj:
        preconditions = (options.get("preconditions") or {}) if isinstance(options, dict) else {}
        with self.cond:
            cur = self._current(rt, ns, name)
            meta = cur["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if preconditions.get("resourceVersion") and str(preconditions["resourceVersion"]) != _rv_of(cur):
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{preconditions['resourceVersion']}, ResourceVersion in object meta: {_rv_of(cur)}",
                )
            grace = self.grace_for(rt, cur, options) if self.grace_for is not None else 0
            if grace > 0 or (meta.get("deletionTimestamp") and not _deletion_due(meta)):
                return self._delete_gracefully(rt, ns, name, cur, grace)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return copy.deepcopy(rt.from_storage(cur))  # already being deleted: nothing to write
                marked_meta = {**meta, "deletionTimestamp": now_rfc3339(), "deletionGracePeriodSeconds": 0}
                if meta.get("generation"):  # like markAsDeleting(): the deletion request bumps generation
                    marked_meta["generation"] = meta["generation"] + 1
                marked = {**cur, "metadata": marked_meta}
                return self._commit("MODIFIED", rt, ns, name, marked, cur)
            gone = self._commit("DELETED", rt, ns, name, None, cur)
            if rt.return_deleted_object:
                return gone
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta["uid"]},
            }

    def _delete_gracefully(self, rt: ResourceType, ns: str, name: str, cur: Obj, grace: int) -> Obj:
        """Mark (or shorten) a graceful deletion, as the apiserver's BeforeDelete does: the object stays,
        with ``deletionTimestamp`` = now + grace, until someone deletes it again with grace 0 (the kubelet,
        once the pod's containers stopped). A longer grace never extends one already under way."""
        meta = cur["metadata"]
        current = meta.get("deletionGracePeriodSeconds")
        if current is not None and current <= grace:
            return copy.deepcopy(rt.from_storage(cur))
        if grace == 0 and not meta.get("finalizers"):
            return self._commit("DELETED", rt, ns, name, None, cur)
        marked_meta = {**meta, "deletionTimestamp": rfc3339_in(grace), "deletionGracePeriodSeconds": grace}
        if meta.get("generation") and current is None:
            marked_meta["generation"] = meta["generation"] + 1
        return self._commit("MODIFIED", rt, ns, name, {**cur, "metadata": marked_meta}, cur)

    def delete_collection(self, rt: ResourceType, ns: str, labels: LabelSelector, fields: FieldSelector) -> Obj:
        with self.cond:
            items, _ = self.list_objects(rt, ns, labels, fields)
            done = [self.delete(rt, ns, item["metadata"]["name"]) for item in items]
            return {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.rv)},
                "items": [d for d in done if d.get("kind") != "Status"],
            }

    # --- reads -------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        with self.cond:
            return copy.deepcopy(rt.from_storage(self._current(rt, ns, name)))

    def list_objects(
        self, rt: ResourceType, ns: str | None, labels: LabelSelector | None = None, fields: FieldSelector | None = None
    ) -> tuple[list[Obj], int]:
        with self.cond:
            stored = sorted(self._objects[rt.storage_key].items())
            views = [rt.from_storage(obj) for (obj_ns, _), obj in stored if ns in (None, obj_ns)]
            views = [
                v for v in views if (labels is None or labels.matches(v)) and (fields is None or fields.matches(v))
            ]
            return copy.deepcopy(views), self.rv

    # --- watches -----------------------------------------------------------

    def open_watch(self, rt: ResourceType, ns: str | None, resource_version: str) -> tuple[Watcher, list[Obj]]:
        """Register a watcher. ``""``/``"0"``: the current objects come back as the initial (synthetic ADDED)
        list and changes after now are queued; an explicit RV queues the retained changes after it, or
        raises 410 when that part of the history is gone."""
        with self.cond:
            watcher = Watcher(rt, ns)
            initial: list[Obj] = []
            if resource_version in ("", "0"):
                initial, _ = self.list_objects(rt, ns)
            else:
                try:
                    since = int(resource_version)
                except ValueError:
                    raise bad_request(f"invalid resource version: {resource_version!r}") from None
                if since < self.compacted_rv:
                    raise expired(f"too old resource version: {since} ({self.compacted_rv + 1})")
                watcher.queue.extend(c for c in self._history if c.rv > since and watcher.wants(c))
            self._watchers.add(watcher)
            self.cond.notify_all()  # wake wait_for() callers counting watchers
            return watcher, initial

    def next_batch(self, watcher: Watcher, timeout: float) -> tuple[list[Change], int] | None:
        """Wait up to ``timeout`` for changes. Returns (changes, progress_rv) -- progress_rv is the RV the
        watcher is known to be up to date with (what a bookmark may carry) -- or None once closed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not watcher.closed and (self._paused or not watcher.queue):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            if watcher.closed:
                return None
            batch: list[Change] = []
            if not self._paused:
                batch = list(watcher.queue)
                watcher.queue.clear()
            progress = watcher.queue[0].rv - 1 if watcher.queue else self.rv
            return batch, progress

    def close_watch(self, watcher: Watcher) -> None:
        with self.cond:
            self._watchers.discard(watcher)
            self.cond.notify_all()

    def close_watchers(self, rt: ResourceType | None = None) -> list[Watcher]:
        with self.cond:
            closing = [w for w in self._watchers if rt is None or w.rt.storage_key == rt.storage_key]
            for watcher in closing:
                watcher.closed = True
                self._watchers.discard(watcher)
            self.cond.notify_all()
            return closing

    def watchers(self) -> list[Watcher]:
        with self.cond:
            return list(self._watchers)

    def compact(self) -> int:
        with self.cond:
            self._history.clear()
            self.compacted_rv = self.rv
            return self.rv

    def set_paused(self, paused: bool) -> None:
        with self.cond:
            self._paused = paused
            self.cond.notify_all()

    # --- direct access for tests -------------------------------------------

    def put(self, rt: ResourceType, obj: Obj) -> Obj:
        """Create or overwrite without API semantics (no validation, status/generation rules untouched)."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        ns = meta.setdefault("namespace", "default") if rt.namespaced else ""
        with self.cond:
            cur = self._objects[rt.storage_key].get((ns, meta["name"]))
            meta.setdefault("uid", cur["metadata"]["uid"] if cur else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", cur["metadata"]["creationTimestamp"] if cur else now_rfc3339())
            if rt.has_generation:
                meta.setdefault("generation", 1)
            return self._commit("MODIFIED" if cur else "ADDED", rt, ns, meta["name"], rt.to_storage(obj), cur)

    def remove(self, rt: ResourceType, ns: str, name: str) -> Obj:
        """Delete immediately, finalizers or not."""
        with self.cond:
            return self._commit("DELETED", rt, ns, name, None, self._current(rt, ns, name))

    def active_watchers(self) -> int:
        with self.cond:
            return len(self._watchers)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return bool(self.cond.wait_for(predicate, timeout))
