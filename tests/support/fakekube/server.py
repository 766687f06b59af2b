"""``FakeApiServer``: start/stop, client configuration, and the Python test hooks."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .admission import WEBHOOK_CONFIGS
from .httpapi import ApiContext, ApiServer, FaultRule, RequestRecord
from .resources import Obj, Registry, ResourceType, default_resources
from .store import Store


class FakeApiServer:
    """A stateful kube-apiserver stand-in over real HTTP (see the package docstring for what it serves).

    Use as a context manager, or call ``start()`` (returns the base URL) and ``stop()``.
    """

    def __init__(
        self,
        *,
        vmi_status_subresource: bool = False,
        kubevirt_status_subresource: bool = True,
        bookmark_interval: float = 1.0,
        history_limit: int = 10_000,
        default_watch_timeout: float = 1800.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.registry = Registry(
            default_resources(
                vmi_status_subresource=vmi_status_subresource, kubevirt_status_subresource=kubevirt_status_subresource
            )
        )
        self.store = Store(history_limit=history_limit)
        self._ctx = ApiContext(self.store, self.registry, bookmark_interval, default_watch_timeout)
        self.store.admit = self._admit
        self._address = (host, port)
        self._httpd: ApiServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> str:
        if self._httpd is None:
            self._httpd = ApiServer(self._address, self._ctx)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-apiserver", daemon=True
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self.store.close_watchers()
        with self._ctx.lock:
            connections = list(self._ctx.connections)
        for conn in connections:  # keep-alive connections and watches: the server is gone
            _cut(conn)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake apiserver is not running")
        host, port = str(self._httpd.server_address[0]), int(self._httpd.server_address[1])
        return f"http://{host}:{port}"

    # --- clients -------------------------------------------------------------

    def client_configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` pointing at this server (no auth)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return cfg

    def api_client(self) -> Any:
        from kubernetes import client

        return client.ApiClient(self.client_configuration())

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default", context: str = "fake") -> Path:
        """Write a kubeconfig (server URL, no credentials) for a subprocess started with ``KUBECONFIG``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
            "current-context": context,
            "preferences": {},
        }
        path = Path(path)
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML: any kubeconfig loader reads it
        return path

    # --- state hooks -----------------------------------------------------------

    def resource_type(self, plural: str, group: str | None = None) -> ResourceType:
        return self.registry.by_plural(plural, group)

    @property
    def resource_version(self) -> int:
        return self.store.rv

    def objects(self, plural: str, ns: str | None = None, *, group: str | None = None) -> list[Obj]:
        """Current objects (deep copies), sorted by namespace/name. ``group`` disambiguates ``events``."""
        return self.store.list_objects(self.resource_type(plural, group), ns)[0]

    def get_object(self, plural: str, ns: str, name: str, *, group: str | None = None) -> Obj | None:
        return next((o for o in self.objects(plural, ns, group=group) if o["metadata"]["name"] == name), None)

    def put_object(self, obj: Obj) -> Obj:
        """Create or overwrite ``obj`` (found by apiVersion/kind; namespace defaults to "default") without API
        rules: no validation, status kept, uid/creationTimestamp filled in if missing. Watchers see it."""
        rt = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise KeyError(f"no served resource for {obj.get('apiVersion')}/{obj.get('kind')}")
        return self.store.put(rt, obj)

    def remove_object(self, plural: str, ns: str, name: str, *, group: str | None = None) -> Obj:
        """Delete at once, ignoring finalizers (watchers see DELETED)."""
        return self.store.remove(self.resource_type(plural, group), ns, name)

    def compact(self) -> int:
        """Forget the change history: a watch from any older RV now gets 410 Gone. Open watches continue."""
        return self.store.compact()

    def drop_watches(self, plural: str | None = None, *, group: str | None = None) -> int:
        """Cut every open watch connection (of one resource if given) abruptly, like a network failure:
        no terminating chunk. Returns how many were cut."""
        rt = self.resource_type(plural, group) if plural else None
        closing = self.store.close_watchers(rt)
        for watcher in closing:
            watcher.dropped = True
            if watcher.connection is not None:
                _cut(watcher.connection)
        return len(closing)

    def pause_watches(self) -> None:
        """Hold back watch events (they queue up; bookmarks do not advance past them) until resume_watches()."""
        self.store.set_paused(True)

    def resume_watches(self) -> None:
        self.store.set_paused(False)

    @property
    def active_watches(self) -> int:
        return self.store.active_watchers()

    def wait_for_watches(
        self, count: int = 1, *, plural: str | None = None, group: str | None = None, timeout: float = 5.0
    ) -> None:
        """Block until at least ``count`` watches (of ``plural`` if given) are open; AssertionError on timeout."""
        key = self.resource_type(plural, group).storage_key if plural else None

        def enough() -> bool:
            return sum(1 for w in self.store.watchers() if key in (None, w.rt.storage_key)) >= count

        if not self.store.wait_for(enough, timeout):
            raise AssertionError(f"fewer than {count} watch(es) on {plural or 'anything'} after {timeout}s")

    # --- admission webhooks ---------------------------------------------------------

    def route_service(self, namespace: str, name: str, port: int, address: tuple[str, int]) -> None:
        """Answer for Service ``namespace/name:port`` at a local address (the fake has no Service network).
        The certificate is still verified for ``<name>.<namespace>.svc``."""
        self._ctx.admission.services[(namespace, name, port)] = address

    @property
    def admission_reviews(self) -> list[Obj]:
        """Every AdmissionReview sent to a webhook so far (oldest first)."""
        return list(self._ctx.admission.calls)

    def _admit(self, operation: str, rt: ResourceType, obj: Obj, old: Obj | None, sub: str | None) -> None:
        configs_rt = self.registry.by_plural(*reversed(WEBHOOK_CONFIGS))
        if rt.storage_key == configs_rt.storage_key:
            return  # as in kube-apiserver: webhook configurations are never sent to webhooks
        configs, _ = self.store.list_objects(configs_rt, None)
        self._ctx.admission.admit(configs, operation, rt, obj, old, sub)

    # --- faults and the request log ----------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        *,
        reason: str | None = None,
        message: str | None = None,
        watch: bool | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        reset: bool = False,
    ) -> FaultRule:
        """Answer the next ``times`` requests whose HTTP method is ``method`` ("*" for any) and whose path
        matches ``path_regex`` (``re.search``) with ``status`` and a Status body. ``watch`` restricts GETs to
        watches (True) or non-watches (False). ``retry_after`` adds that header, ``delay`` answers late, and
        ``reset`` cuts the connection instead of answering. Rules are tried in the order they were added."""
        rule = FaultRule(
            method.upper() if method != "*" else "*",
            re.compile(path_regex),
            status,
            times,
            reason,
            message,
            watch,
            retry_after=retry_after,
            delay=delay,
            reset=reset,
        )
        with self._ctx.lock:
            self._ctx.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._ctx.lock:
            self._ctx.faults.clear()
            self._ctx.random_faults = None

    def random_faults(self, faults: Callable[[str, str, bool, str], FaultRule | None] | None) -> None:
        """Consult ``faults`` (e.g. a seeded ``chaos.RandomFaults``) for every request no rule matched,
        with the request's method, path, whether it is a watch, and its User-Agent; None turns it off."""
        with self._ctx.lock:
            self._ctx.random_faults = faults

    def requests(
        self, method: str | None = None, path_regex: str | None = None, *, watch: bool | None = None
    ) -> list[RequestRecord]:
        """The request log (oldest first), optionally filtered. Records are copies."""
        with self._ctx.lock:
            log = list(self._ctx.log)
        return [
            copy.deepcopy(r)
            for r in log
            if (method is None or r.method == method.upper())
            and (path_regex is None or re.search(path_regex, r.path))
            and (watch is None or r.watch == watch)
        ]

    def clear_requests(self) -> None:
        with self._ctx.lock:
            self._ctx.log.clear()

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of bugs in the fake itself (answered as 500); tests may assert this stays empty."""
        with self._ctx.lock:
            return list(self._ctx.internal_errors)


def _cut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        conn.shutdown(socket.SHUT_RDWR)
