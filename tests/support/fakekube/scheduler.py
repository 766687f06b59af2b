"""A small kube-scheduler: binds each pending pod to a node where it fits, or says why none fits.

A node fits when, in kube-scheduler's filter order, it is not cordoned
(``spec.unschedulable``), every ``NoSchedule``/``NoExecute`` taint is tolerated, the pod's
``nodeSelector`` and required node affinity (``In``, ``NotIn``, ``Exists``,
``DoesNotExist``) match its labels, and ``status.allocatable`` minus what the pods already
bound there request (until they finish or are removed) leaves room for every resource the
pod requests: cpu, memory, ``pods`` and extended resources such as
``qat.intel.com/generic``. The first node that fits, by name, is chosen. Binding sets
``spec.nodeName`` and ``PodScheduled=True`` in one write. When no node fits, the pod gets
``PodScheduled=False``, reason ``Unschedulable``, and kube-scheduler's message, e.g.
``0/3 nodes are available: 3 Insufficient qat.intel.com/generic.``; it is tried again on
every later change in the cluster. Pods are tried in the order the scheduler first saw them.

Only pods for ``default-scheduler`` are handled. Not modelled: priorities and preemption,
preferred affinity, pod (anti-)affinity, topology spread, host ports, volumes.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from typing import Any

from . import patch as patches
from .errors import ApiError
from .quantities import Amounts, amounts, pod_requests
from .resources import Obj, Registry
from .store import Store, now_rfc3339

SCHEDULER_NAME = "default-scheduler"
FINISHED = ("Succeeded", "Failed")


def node_filter_reasons(pod: Obj, node: Obj, used: Amounts, bound: int) -> list[str]:
    """Why ``pod`` cannot go to ``node`` (empty: it fits), from the first filter that fails."""
    spec, node_spec = pod.get("spec") or {}, node.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if node_spec.get("unschedulable"):
        return ["node(s) were unschedulable"]
    untolerated = [t for t in node_spec.get("taints") or [] if not _tolerated(t, spec.get("tolerations") or [])]
    if untolerated:
        taint = untolerated[0]
        return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"]
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()) or not _affinity_matches(spec, labels):
        return ["node(s) didn't match Pod's node affinity/selector"]
    allocatable = amounts((node.get("status") or {}).get("allocatable"))
    reasons = []
    if "pods" in allocatable and bound + 1 > allocatable["pods"]:
        reasons.append("Too many pods")
    for name, wanted in sorted(pod_requests(pod).items()):
        if wanted > 0 and wanted > allocatable[name] - used[name]:
            reasons.append(f"Insufficient {name}")
    return reasons


def unschedulable_message(node_count: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError text."""
    if node_count == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{node_count} nodes are available: {', '.join(parts)}."


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint.get("effect")):
            continue
        key_ok = not toleration.get("key") or toleration.get("key") == taint.get("key")
        if toleration.get("operator") == "Exists":
            if key_ok:
                return True
        elif key_ok and toleration.get("key") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def _affinity_matches(spec: Obj, labels: dict[str, str]) -> bool:
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    terms = required.get("nodeSelectorTerms") or []
    return any(all(_expression_matches(e, labels) for e in t.get("matchExpressions") or []) for t in terms)


def _expression_matches(expression: Obj, labels: dict[str, str]) -> bool:
    key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


class FakeScheduler:
    def __init__(self, store: Store, registry: Registry) -> None:
        self._store = store
        self._pods = registry.by_plural("pods")
        self._nodes = registry.by_plural("nodes")
        self._seen: dict[str, int] = {}
        self._counter = itertools.count()
        self.bindings: list[tuple[str, str, str]] = []
        """(namespace, pod name, node) of every binding made, oldest first."""

    def sync(self) -> None:
        """Try every pending pod once, in queue order, against the cluster as it is now."""
        with self._store.cond:
            pods, _ = self._store.list_objects(self._pods, None)
            nodes, _ = self._store.list_objects(self._nodes, None)
        pending = [p for p in pods if self._pending(p)]
        for pod in sorted(pending, key=lambda p: int(p["metadata"]["resourceVersion"])):
            self._seen.setdefault(pod["metadata"]["uid"], next(self._counter))
        live = {p["metadata"]["uid"] for p in pods}
        self._seen = {uid: order for uid, order in self._seen.items() if uid in live}
        for pod in sorted(pending, key=lambda p: self._seen[p["metadata"]["uid"]]):
            node = self._place(pod, nodes, pods)
            if node is not None:
                pods = [p for p in pods if p["metadata"]["uid"] != pod["metadata"]["uid"]]
                pods.append({**pod, "spec": {**pod["spec"], "nodeName": node}})

    @staticmethod
    def _pending(pod: Obj) -> bool:
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        return (
            not spec.get("nodeName")
            and not meta.get("deletionTimestamp")
            and spec.get("schedulerName", SCHEDULER_NAME) == SCHEDULER_NAME
            and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
        )

    def _place(self, pod: Obj, nodes: list[Obj], pods: list[Obj]) -> str | None:
        reasons: Counter[str] = Counter()
        for node in nodes:
            name = node["metadata"]["name"]
            on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name and _holds_resources(p)]
            used: Amounts = Counter()
            for other in on_node:
                used.update(pod_requests(other))
            failed = node_filter_reasons(pod, node, used, len(on_node))
            if not failed:
                return name if self._bind(pod, name) else None
            reasons.update(failed)
        self._mark_unschedulable(pod, unschedulable_message(len(nodes), reasons))
        return None

    def _bind(self, pod: Obj, node: str) -> bool:
        meta = pod["metadata"]
        with self._store.cond:  # read and write in one step: a single watch event, as a Binding gives
            try:
                current = self._store.get(self._pods, meta["namespace"], meta["name"])
            except ApiError:
                return False
            if current["metadata"]["uid"] != meta["uid"] or not self._pending(current):
                return False
            current["spec"]["nodeName"] = node
            status = current.setdefault("status", {})
            status["conditions"] = _with_condition(status.get("conditions"), _scheduled("True", None, None))
            self._store.put(self._pods, current)
        self.bindings.append((meta["namespace"], meta["name"], node))
        return True

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        status = pod.get("status") or {}
        wanted = _scheduled("False", "Unschedulable", message)
        current = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if current and all(current.get(k) == wanted[k] for k in ("status", "reason", "message")):
            return
        if current and current.get("status") == "False":
            wanted["lastTransitionTime"] = current.get("lastTransitionTime")
        meta = pod["metadata"]
        body = {
            "metadata": {"uid": meta["uid"]},
            "status": {"conditions": _with_condition(status.get("conditions"), wanted)},
        }
        with contextlib.suppress(ApiError):  # gone or replaced meanwhile: the next pass sees the new state
            self._store.patch(self._pods, meta["namespace"], meta["name"], patches.MERGE, body, "status")


def _holds_resources(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in FINISHED


def _scheduled(status: str, reason: str | None, message: str | None) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": "PodScheduled",
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": now_rfc3339(),
    }
    if reason:
        condition.update(reason=reason, message=message)
    return condition


def _with_condition(conditions: list[Obj] | None, condition: Obj) -> list[Obj]:
    return [c for c in conditions or [] if c.get("type") != condition["type"]] + [condition]
