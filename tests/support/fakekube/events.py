"""Events: the two API views of one stored object, and create-time validation.

A real cluster stores one kind of Event and serves it as both core ``v1`` and
``events.k8s.io/v1``; an event posted through either API is listable through the
other. The stored form here is the core form; these functions convert between the
two and reproduce the validation rules a node agent is most likely to trip over.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

# events.k8s.io/v1 field name -> core/v1 field name (fields not listed have the same name in both)
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_TO_V1 = {core: v1 for v1, core in _RENAMED.items()}

CORE_FIELD_LABELS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)


def to_core(obj: Obj) -> Obj:
    out = {_RENAMED.get(k, k): v for k, v in obj.items()}
    out["apiVersion"], out["kind"] = "v1", "Event"
    return out


def from_core(obj: Obj) -> Obj:
    out = {_TO_V1.get(k, k): v for k, v in obj.items()}
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    out.setdefault("eventTime", None)  # not omitempty in events.k8s.io/v1: legacy events show null
    return out


def validate_core(ev: Obj, namespace: str) -> list[str]:
    """The checks of the real server's legacy (core v1) event validation."""
    causes: list[str] = []
    involved_ns = (ev.get("involvedObject") or {}).get("namespace") or ""
    if not ev.get("eventTime"):
        if (involved_ns and involved_ns != namespace) or (not involved_ns and namespace not in ("", "default")):
            causes.append(f"involvedObject.namespace: Invalid value: {involved_ns!r}: does not match event.namespace")
        return causes
    if not involved_ns and namespace not in ("default", "kube-system"):
        causes.append(f"involvedObject.namespace: Invalid value: {involved_ns!r}: does not match event.namespace")
    for name in ("reportingComponent", "reportingInstance", "action", "reason"):
        if not ev.get(name):
            causes.append(f"{name}: Required value")
    return causes


def validate_events_v1(ev: Obj, namespace: str) -> list[str]:
    """events.k8s.io/v1 validation: the new-style fields are mandatory, the deprecated ones forbidden."""
    causes: list[str] = []
    if not ev.get("eventTime"):
        causes.append("eventTime: Required value")
    if ev.get("type") not in ("Normal", "Warning"):
        causes.append(f"type: Invalid value: {ev.get('type')!r}: has invalid value, must be Normal or Warning")
    for name in ("deprecatedSource", "deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount"):
        if ev.get(name):
            causes.append(f"{name}: Invalid value: {ev[name]!r}: needs to be unset")
    for name in ("reportingController", "reportingInstance", "action", "reason"):
        value = ev.get(name) or ""
        if not value:
            causes.append(f"{name}: Required value")
        elif len(value) > 128:
            causes.append(f"{name}: Too long: may not be more than 128 bytes")
    if len((ev.get("note") or "").encode()) > 1024:
        causes.append("note: Too long: may not be more than 1024 bytes")
    return causes
