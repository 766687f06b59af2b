"""The HTTP face of the fake: routing, discovery, the request log, injected faults,
and watch streaming (chunked transfer encoding, one ``{"type", "object"}`` JSON
document per line, as ``kubernetes.watch.Watch`` reads it).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import openapi, tables
from .admission import Admission
from .errors import ApiError, bad_request, method_not_allowed, path_not_found
from .patch import touched_paths
from .resources import Obj, Registry, ResourceType
from .selectors import FieldSelector, LabelSelector, SelectorError
from .store import Change, Store, Watcher

_LIVENESS_PERIOD = 0.25  # how often an idle watch checks that its client is still there
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any  # parsed JSON, the raw text if it was not JSON, or None
    watch: bool = False
    status: int | None = None  # the HTTP status answered (200 for a watch that was opened)

    @property
    def touched(self) -> list[str]:
        """Dotted paths this write sets or removes (see ``patch.touched_paths``); ``["*"]`` for PUT/POST."""
        return touched_paths(self.content_type, self.body)


@dataclass
class FaultRule:
    method: str  # HTTP method or "*"
    pattern: re.Pattern[str]
    status: int
    remaining: int
    reason: str | None = None
    message: str | None = None
    watch: bool | None = None  # None: watches and non-watches alike
    retry_after: int | None = None  # seconds, sent as Retry-After (with 429 or 503)
    delay: float = 0.0  # seconds to wait before answering (a slow API server)
    reset: bool = False  # cut the connection instead of answering
    status_only: bool = True  # False: after the delay, serve the request normally

    def matches(self, method: str, path: str, is_watch: bool) -> bool:
        return (
            self.remaining > 0
            and self.method in ("*", method)
            and (self.watch is None or self.watch == is_watch)
            and self.pattern.search(path) is not None
        )


@dataclass
class ApiContext:
    """Everything request handlers share; owned by ``FakeApiServer``."""

    store: Store
    registry: Registry
    bookmark_interval: float
    default_watch_timeout: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[RequestRecord] = field(default_factory=list)
    faults: list[FaultRule] = field(default_factory=list)
    connections: set[socket.socket] = field(default_factory=set)
    internal_errors: list[str] = field(default_factory=list)
    admission: Admission = field(default_factory=Admission)

    random_faults: Callable[[str, str, bool, str], FaultRule | None] | None = None
    """Consulted for every request that no rule matched, with its User-Agent (seeded chaos; see
    FakeApiServer.random_faults)."""

    def take_fault(self, method: str, path: str, is_watch: bool, user_agent: str = "") -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.matches(method, path, is_watch):
                    rule.remaining -= 1
                    return rule
            chaos = self.random_faults
        return chaos(method, path, is_watch, user_agent) if chaos is not None else None


@dataclass
class Target:
    rt: ResourceType
    namespace: str | None  # None: the all-namespaces collection
    name: str | None
    subresource: str | None


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ctx: ApiContext):
        super().__init__(address, ApiHandler)
        self.ctx = ctx


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms per request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.ctx.lock:
            self.server.ctx.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.ctx.lock:
            self.server.ctx.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the peer may already be gone
            super().finish()

    record: RequestRecord

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    # --- plumbing ----------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.record.status = code  # before the client can see the answer: tests read the log right after
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        ctx = self.server.ctx
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._read_body()
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() or None
        body: Any = None
        parse_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as e:
                body, parse_error = raw.decode(errors="replace"), str(e)
        is_watch = self.command == "GET" and query.get("watch") in _TRUE
        self.record = RequestRecord(self.command, path, query, content_type, body, is_watch)
        ctx.admission.user = self.headers.get("Impersonate-User")
        with ctx.lock:
            ctx.log.append(self.record)
        try:
            fault = ctx.take_fault(self.command, path, is_watch, self.headers.get("User-Agent", ""))
            if fault and self._injected(fault):
                return
            if parse_error is not None:
                raise bad_request(f"the request body is not valid JSON: {parse_error}")
            self._dispatch(path, query, content_type, body)
        except ApiError as e:
            self._send_json(e.code, e.status())
        except SelectorError as e:
            self._send_json(400, bad_request(str(e)).status())
        except OSError:
            self.close_connection = True
        except Exception:  # a bug in the fake: answer 500 and keep the trace for the tests to see
            trace = traceback.format_exc()
            with ctx.lock:
                ctx.internal_errors.append(f"{self.command} {self.path}\n{trace}")
            if self.record.status is not None:  # a watch stream is under way: all we can do is cut it
                self.close_connection = True
            else:
                self._send_json(500, ApiError(500, "fake apiserver internal error: " + trace.splitlines()[-1]).status())

    def _injected(self, fault: FaultRule) -> bool:
        """Play an injected fault; True when it answered (or cut) the request."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.reset:
            self.record.status = 0
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if not fault.status_only:
            return False
        error = ApiError(fault.status, fault.message or f"injected failure ({fault.status})", fault.reason)
        data = json.dumps(error.status()).encode()
        self.record.status = fault.status
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.end_headers()
        self.wfile.write(data)
        return True

    # --- routing -----------------------------------------------------------

    def _dispatch(self, path: str, query: dict[str, str], content_type: str | None, body: Any) -> None:
        doc = self._discovery(path)
        if doc is not None:
            if self.command != "GET":
                raise method_not_allowed(self.command)
            self._send_json(200, doc)
            return
        target = self._target(path)
        store, rt, ns, name = self.server.ctx.store, target.rt, target.namespace, target.name
        method = self.command
        if name is None:  # collection
            labels = LabelSelector(query.get("labelSelector"))
            fields = FieldSelector(query.get("fieldSelector"), rt.field_labels)
            if method == "GET" and self.record.watch:
                self._watch(rt, ns, query, labels, fields)
            elif method == "GET":
                items, rv = store.list_objects(rt, ns, labels, fields)
                if self._send_table(rt, items, str(rv)):
                    return
                if not rt.custom:  # built-in lists do not repeat apiVersion/kind on items
                    items = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
                self._send_json(
                    200,
                    {
                        "kind": rt.list_kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(rv)},
                        "items": items,
                    },
                )
            elif method == "POST" and ns is not None:
                self._refuse_dry_run(query)
                self._send_json(201, store.create(rt, ns, body))
            elif method == "DELETE" and ns is not None:
                self._refuse_dry_run(query)
                self._send_json(200, store.delete_collection(rt, ns, labels, fields))
            else:
                raise method_not_allowed(method)
            return
        assert ns is not None
        if method == "GET":
            found = store.get(rt, ns, name)
            if not self._send_table(rt, [found], str(found["metadata"].get("resourceVersion", ""))):
                self._send_json(200, found)
            return
        self._refuse_dry_run(query)
        if method == "PUT":
            self._send_json(200, store.replace(rt, ns, name, body, target.subresource))
        elif method == "PATCH":
            self._send_json(200, store.patch(rt, ns, name, content_type or "", body, target.subresource))
        elif method == "DELETE" and target.subresource is None:
            self._send_json(200, store.delete(rt, ns, name, _delete_options(body, query)))
        else:
            raise method_not_allowed(method)

    def _send_table(self, rt: ResourceType, items: list[Obj], rv: str) -> bool:
        """A Table when the client asks for one and a stored CRD gives the custom type's columns."""
        if not rt.custom or not tables.wants_table(self.headers.get("Accept")):
            return False
        registry, store = self.server.ctx.registry, self.server.ctx.store
        crds = [c for c in store.list_objects(registry.by_plural("customresourcedefinitions"), None)[0]]
        crd = next((c for c in crds if c["metadata"]["name"] == rt.group_resource), None)
        columns = tables.columns_for(crd, rt)
        if columns is None:
            return False
        self._send_json(200, tables.table(columns, items, rv))
        return True

    @staticmethod
    def _refuse_dry_run(query: dict[str, str]) -> None:
        if query.get("dryRun"):
            raise bad_request("dryRun is not implemented by the fake apiserver")

    def _discovery(self, path: str) -> Obj | None:
        registry = self.server.ctx.registry
        parts = path.strip("/").split("/")
        host, port = str(self.server.server_address[0]), int(self.server.server_address[1])
        if path == "/version":
            return {
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0-fake",
                "gitCommit": "fake",
                "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.24",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/openapi/v3":
            return openapi.index(registry)
        if path.startswith("/openapi/v3/"):
            gv = parts[3:] if parts[2] == "apis" else ["", *parts[3:]]
            found = openapi.document(registry, gv[0], gv[1]) if len(gv) == 2 else None
            if found is None:
                raise path_not_found()
            return found
        if path == "/api":
            return registry.api_versions(f"{host}:{port}")
        if path == "/apis":
            return registry.api_group_list()
        if parts[0] == "api" and len(parts) == 2:
            doc = registry.api_resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = registry.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = registry.api_resource_list(parts[1], parts[2])
        else:
            return None  # not a discovery path
        if doc is None:
            raise path_not_found()
        return doc

    def _target(self, path: str) -> Target:
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise path_not_found()
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        rt = self.server.ctx.registry.lookup(group, version, rest[0])
        if rt is not None and not rt.namespaced:  # cluster-scoped: stored under the namespace ""
            if namespace is not None:
                raise path_not_found()
            namespace = ""
        if rt is None or len(rest) > 3 or (namespace is None and len(rest) > 1):
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "status" or not rt.status_subresource):
            raise path_not_found()
        return Target(rt, namespace, name, sub)

    # --- watch -------------------------------------------------------------

    def _chunk(self, payload: Any) -> None:
        data = json.dumps(payload).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(
        self, rt: ResourceType, ns: str | None, query: dict[str, str], labels: LabelSelector, fields: FieldSelector
    ) -> None:
        ctx = self.server.ctx
        try:
            timeout = float(query.get("timeoutSeconds") or ctx.default_watch_timeout)
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds {query['timeoutSeconds']!r}") from None
        bookmarks = query.get("allowWatchBookmarks") in _TRUE
        gone: ApiError | None = None
        watcher: Watcher | None = None
        initial: list[Obj] = []
        try:
            watcher, initial = ctx.store.open_watch(rt, ns, query.get("resourceVersion", ""))
        except ApiError as e:
            if e.code != 410:
                raise
            gone = e  # like the real server: a 200 stream carrying one ERROR event
        self.record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if watcher is None:
            assert gone is not None
            self._chunk({"type": "ERROR", "object": gone.status()})
            self.wfile.write(b"0\r\n\r\n")
            return
        watcher.connection = self.connection
        clean = False
        try:
            clean = self._stream(
                watcher, initial, timeout, bookmarks, query.get("sendInitialEvents") in _TRUE, labels, fields
            )
        except OSError:
            pass
        finally:
            ctx.store.close_watch(watcher)
        if not clean:  # cut (drop_watches/stop), or the client went away: this connection is finished
            self.close_connection = True

    def _bookmark(self, rt: ResourceType, rv: int, annotations: dict[str, str] | None = None) -> None:
        meta: Obj = {"resourceVersion": str(rv)}
        if annotations:
            meta["annotations"] = annotations
        self._chunk({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}})

    def _stream(
        self,
        watcher: Watcher,
        initial: list[Obj],
        timeout: float,
        bookmarks: bool,
        initial_events_end: bool,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> bool:
        """Serve events until the timeout (then end the chunked body cleanly and return True), or until the
        watch is closed or its client leaves (return False: no terminating chunk, like a cut connection)."""
        ctx, rt = self.server.ctx, watcher.rt
        start = time.monotonic()
        deadline, next_bookmark = start + timeout, start + ctx.bookmark_interval
        sent_bookmark, progress = False, None
        for obj in initial:
            if labels.matches(obj) and fields.matches(obj):
                self._chunk({"type": "ADDED", "object": obj})
        if initial_events_end and bookmarks:
            self._bookmark(rt, ctx.store.rv, {"k8s.io/initial-events-end": "true"})
        while (now := time.monotonic()) < deadline:
            wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
            batch = ctx.store.next_batch(watcher, min(max(wait, 0.0), _LIVENESS_PERIOD))
            if batch is None:  # closed by drop_watches() or stop()
                return False
            changes, progress = batch
            if not changes and self._client_gone():
                return False
            for change in changes:
                event = _event_for(rt, change, labels, fields)
                if event is not None:
                    self._chunk(event)
            if bookmarks and time.monotonic() >= next_bookmark:
                self._bookmark(rt, progress)
                sent_bookmark = True
                next_bookmark = time.monotonic() + ctx.bookmark_interval
        if bookmarks and not sent_bookmark and progress is not None:
            self._bookmark(rt, progress)  # every watch that allows bookmarks gets at least one
        self.wfile.write(b"0\r\n\r\n")
        return True

    def _client_gone(self) -> bool:
        """True once the client closed its end (e.g. ``Watch.stop()``), so idle watches do not linger."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""


def _delete_options(body: Any, query: dict[str, str]) -> Obj:
    """DeleteOptions from the body, with ``gracePeriodSeconds`` and ``propagationPolicy`` also taken from the
    query string, where the official client puts them."""
    options: Obj = dict(body) if isinstance(body, dict) else {}
    if "gracePeriodSeconds" in query:
        try:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        except ValueError:
            raise bad_request(f"invalid gracePeriodSeconds {query['gracePeriodSeconds']!r}") from None
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    return options


def _event_for(rt: ResourceType, change: Change, labels: LabelSelector, fields: FieldSelector) -> Obj | None:
    """What one watcher sees of a change, given its selectors: an object that stops matching is DELETED
    (carrying its last matching state and the new RV) and one that starts matching is ADDED -- the
    real watch cache's rules."""
    cur = rt.from_storage(change.obj)
    prev = rt.from_storage(change.prev) if change.prev is not None else None

    def passes(obj: Obj | None) -> bool:
        return obj is not None and labels.matches(obj) and fields.matches(obj)

    if change.type == "ADDED":
        return {"type": "ADDED", "object": cur} if passes(cur) else None
    if change.type == "DELETED":
        return {"type": "DELETED", "object": cur} if passes(cur) else None
    now_ok, was_ok = passes(cur), passes(prev)
    if now_ok:
        return {"type": "MODIFIED" if was_ok else "ADDED", "object": cur}
    if was_ok:
        assert prev is not None
        return {
            "type": "DELETED",
            "object": {**prev, "metadata": {**prev["metadata"], "resourceVersion": str(change.rv)}},
        }
    return None
