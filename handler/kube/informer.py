"""List, then watch, one kind of object into a cache, as a client-go informer does.

* the watch starts from the list's resourceVersion, asks for bookmarks and carries the
  version forward from every event, bookmarks included;
* 410 Gone relists and diffs against the cache, so deletes missed while the watch was
  down still arrive as deletes;
* errors reconnect with exponential backoff, and a silent stream (no event and no
  bookmark for ``inactivity_seconds``) is dropped and reopened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, Unpack

import structlog
import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from handler.core.backoff import Backoff
from handler.kube.client import raw
from handler.kube.object_meta import resource_version

log = structlog.get_logger("qat_handler.informer")

Obj = dict[str, Any]


class Selectors(TypedDict, total=False):
    label_selector: str
    field_selector: str


class ListOptions(Selectors, total=False):
    """The keywords a list call gets: from the informer, and from ``watch.Watch.stream``."""

    resource_version: str | None
    allow_watch_bookmarks: bool
    timeout_seconds: int
    watch: bool
    _preload_content: bool
    _request_timeout: tuple[float, float]


class ListCall(Protocol):
    """A client ``list_*`` method with its positional arguments bound. With ``_preload_content=False``
    it returns the raw HTTP response rather than the model its signature names."""

    def __call__(self, **options: Unpack[ListOptions]) -> object: ...


WATCH_RETRY = Backoff(0.5, 30.0)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    watch_seconds: int = 300
    """Server-side timeout of one watch request; the informer simply opens the next one."""
    inactivity_seconds: float = 90.0
    """No bytes for this long (bookmarks included) means the stream is dead."""
    backoff: Backoff = WATCH_RETRY
    """Between failed list or watch requests; a not-served resource is looked at again after the max."""


DEFAULT_WATCH = WatchSettings()


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


class Informer:
    def __init__(
        self,
        name: str,
        list_call: ListCall,
        on_change: Callable[[str, Obj], None],
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        settings: WatchSettings = DEFAULT_WATCH,
        on_restart: Callable[[str], None] = lambda _name: None,
        optional: bool = False,
    ) -> None:
        self.name = name
        self._list_call = list_call
        self._on_change = on_change
        self._selectors = Selectors()
        if label_selector:
            self._selectors["label_selector"] = label_selector
        if field_selector:
            self._selectors["field_selector"] = field_selector
        self._settings = settings
        self._on_restart = on_restart
        self._optional = optional
        """A resource the cluster may not serve at all (404): then it is simply empty."""
        self._lock = threading.Lock()
        self._cache: dict[str, Obj] = {}
        self._rv: str | None = None
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self.synced = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading the cache ----------------------------------------------------------------
    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._cache.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Its thread is up (False before start and after it ended)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        current = self._watch
        if current is not None:
            current.stop()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._rv is None:
                    self._relist()
                self._watch_once()
                failures = 0
            except ApiException as error:
                if error.status == 410:
                    log.info("watch expired; relisting", informer=self.name, reason="Gone")
                    self._rv = None
                    self._on_restart(self.name)
                    continue
                if error.status == 404 and self._optional:
                    self._not_served()
                    continue
                failures += 1
                self._retry(_describe(error), self._settings.backoff.delay(failures))
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                failures += 1
                self._retry(f"{error.__class__.__name__}: {error}", self._settings.backoff.delay(failures))

    def _not_served(self) -> None:
        """The cluster does not serve this resource: an empty, synced cache, looked at again later."""
        if not self.synced.is_set():
            log.info("resource not served; treating it as empty", informer=self.name)
        with self._lock:
            old, self._cache = self._cache, {}
        for obj in old.values():
            self._on_change("DELETED", obj)
        self._rv = None
        self.synced.set()
        self._stop.wait(self._settings.backoff.max_seconds)

    def _retry(self, why: str, delay: float) -> None:
        if self._stop.is_set():
            return
        log.warning("watch failed; reconnecting", informer=self.name, error=why, retry_in=round(delay, 2))
        self._on_restart(self.name)
        self._stop.wait(delay)

    def _relist(self) -> None:
        listing = raw(self._list_call(_preload_content=False, **self._selectors))
        fresh = {object_key(obj): obj for obj in listing.get("items") or []}
        with self._lock:
            old = self._cache
            self._cache = dict(fresh)
        for key, obj in old.items():
            if key not in fresh:
                self._on_change("DELETED", obj)
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None:
                self._on_change("ADDED", obj)
            elif resource_version(previous) != resource_version(obj):
                self._on_change("MODIFIED", obj)
        self._rv = (listing.get("metadata") or {}).get("resourceVersion") or ""
        self.synced.set()

    def _watch_once(self) -> None:
        stream = watch.Watch()
        self._watch = stream
        try:
            for event in stream.stream(
                self._list_call,
                resource_version=self._rv,
                allow_watch_bookmarks=True,
                timeout_seconds=self._settings.watch_seconds,
                _request_timeout=(10, self._settings.inactivity_seconds),
                **self._selectors,
            ):
                if self._stop.is_set():
                    return
                self._apply(event["type"], event.get("raw_object") or {})
        finally:
            self._watch = None

    def _apply(self, kind: str, obj: Obj) -> None:
        version = resource_version(obj)
        if version:
            self._rv = version
        if kind == "BOOKMARK":
            return
        key = object_key(obj)
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
        self._on_change(kind, obj)


def _describe(error: ApiException) -> str:
    if error.status == 403:
        return "403 Forbidden; fix: grant the agent's ServiceAccount list and watch (see deploy/rbac-*.yaml)"
    return f"API error {error.status}: {error.reason}"
