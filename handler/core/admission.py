"""What the admission webhook decides about a VMI create or update: pure data in, a verdict out.

The checks are the node's own, so a VMI the agent would refuse is refused at ``kubectl
apply`` with the same one-line message: the parser (every field, name and value rule),
the QAT feature gate for ``qats`` (``hostDevices`` are not gated, as on the node), the
permitted-devices list (a resource that no permitted device serves can never start), and
the pod network, which no node in Kubernetes can give a guest (handler.core.nad).
After creation a VMI's spec is immutable, except for the stack's own service accounts
(KubeVirt's rule); status, labels, annotations and finalizers stay writable, so the
agent's status patches pass even while the gate is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handler.core.feature_gates import GATE_OFF_MESSAGE, QAT_GATE
from handler.core.nad import pod_network_refusal
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refusal, Refused
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi

QATS_FIELD = "spec.domain.devices.qats"


@dataclass(frozen=True, slots=True)
class Cause:
    """One refused field, as a metav1.StatusCause: ``field`` is the path, ``message`` one line."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    causes: tuple[Cause, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.causes

    @property
    def message(self) -> str:
        return "; ".join(cause.message for cause in self.causes)


ALLOWED = Verdict()


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    gates: frozenset[str] = frozenset()
    """Feature gates enabled in kubevirt-config (or the KubeVirt CR) right now."""
    permitted: PermittedDevices = field(default_factory=PermittedDevices)
    exempt_users: frozenset[str] = frozenset()
    """Usernames that may change a VMI's spec, e.g. ``system:serviceaccount:qat-handler:qat-handler``."""


@dataclass(frozen=True, slots=True)
class VmiRequest:
    """The parts of an AdmissionReview request that the decision reads."""

    operation: str
    namespace: str
    uid: str
    """The request's uid: stands in for a VMI uid the object does not carry yet."""
    username: str
    obj: Mapping[str, Any] | None
    old: Mapping[str, Any] | None = None
    name: str = ""
    """The object's name as the request gives it (generated names are filled in by then)."""


def decide(request: VmiRequest, policy: AdmissionPolicy) -> Verdict:
    if request.operation == "CREATE":
        return validate(request, policy)
    if request.operation == "UPDATE":
        old_spec = (request.old or {}).get("spec")
        new_spec = (request.obj or {}).get("spec")
        if old_spec == new_spec:
            return ALLOWED
        if request.username not in policy.exempt_users:
            return Verdict((Cause("spec", _immutable_line(request.username)),))
        # The stack's own write: still a VMI the node can read, but the gate and the networks were
        # judged at creation (and the node holds such a VMI back by itself).
        return validate(request, policy, creating=False)
    return ALLOWED


def validate(request: VmiRequest, policy: AdmissionPolicy, *, creating: bool = True) -> Verdict:
    """Every check the node would make before it ever sees a device."""
    manifest = _with_namespace(request.obj, request.namespace)
    try:
        vmi = parse_vmi(manifest, default_uid=request.uid)
    except Refused as refused:
        return Verdict((_cause(refused.refusal),))
    judged_at_creation = [*_gate_causes(vmi, policy.gates), *_network_causes(vmi)] if creating else []
    causes = [*judged_at_creation, *_permitted_causes(vmi, policy.permitted)]
    return Verdict(tuple(causes))


def _with_namespace(obj: Mapping[str, Any] | None, namespace: str) -> Any:
    """A created object may come without metadata.namespace; the request names it."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("metadata"), Mapping) or not namespace:
        return obj
    meta = obj["metadata"]
    return obj if meta.get("namespace") else {**obj, "metadata": {**meta, "namespace": namespace}}


def _gate_causes(vmi: VMI, gates: frozenset[str]) -> list[Cause]:
    asks_qat = any(request.field.startswith(QATS_FIELD) for request in vmi.devices)
    if asks_qat and QAT_GATE not in gates:
        return [Cause(QATS_FIELD, GATE_OFF_MESSAGE)]
    return []


def _permitted_causes(vmi: VMI, permitted: PermittedDevices) -> list[Cause]:
    causes = []
    for request in vmi.devices:
        if permitted.serves(request.resource):
            continue
        refusal = Refusal(
            "DeviceRejected",
            f"{request.field}.deviceName",
            f"is {request.resource!r}, which no permitted device serves",
            "request a qat.intel.com/* resource, or add {pciVendorSelector: VENDOR:DEVICE, resourceName: "
            f"{request.resource}}} to permittedHostDevices.pciHostDevices",
        )
        causes.append(_cause(refusal))
    return causes


def _network_causes(vmi: VMI) -> list[Cause]:
    """Only what is known without the cluster's objects: a NetworkAttachmentDefinition may be
    created after the VMI, so the node judges multus networks when the guest starts."""
    return [_cause(pod_network_refusal(i).refusal) for i in vmi.interfaces if i.network.kind == "pod"]


def _cause(refusal: Refusal) -> Cause:
    return Cause(refusal.subject, refusal.line())


def _immutable_line(username: str) -> str:
    return Refusal(
        "SpecImmutable",
        "spec",
        f"of a VMI cannot be changed after it is created (update by {username or 'an anonymous user'})",
        "delete the VMI and create it again with the new spec",
    ).line()
