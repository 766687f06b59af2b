"""Rule 1 in Kubernetes: every device in a pod's handoff came from that pod's own kubelet allocation.

The launcher copies device addresses from its environment, so a forged or stale handoff
could name a VF that kubelet gave to another pod, or to nobody. Kubelet's pod-resources
API says what it really allocated; the QAT device plugin uses the VF's BDF as device ID.
Both sides are compared as parsed BDFs, so ``3D:01.1`` matches ``0000:3d:01.1``; a kubelet
device ID that is not a BDF matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from handler.core.bdf import parse_bdf
from handler.core.refusal import Refusal

_FIX = (
    "restart the VMI so that its pod gets a fresh allocation, and make sure that only the VMI's"
    " own launcher can write its handoff slot"
)


def check_allocation(
    bdfs_by_resource: Mapping[str, Iterable[str]],
    allocated: Mapping[str, frozenset[str]] | None,
    pod: str,
) -> Refusal | None:
    """The first handoff BDF (by resource, then address) that kubelet did not allocate to ``pod``.

    ``allocated`` maps resource name to kubelet's device IDs for the pod, or is None when
    kubelet lists no such pod; ``pod`` is ``namespace/name``, used in the message.
    """
    for resource in sorted(bdfs_by_resource):
        granted = _normalised(allocated.get(resource, frozenset()) if allocated is not None else ())
        for text in sorted(_normalise(text) or text for text in bdfs_by_resource[resource]):
            if text not in granted:
                return _refusal(text, pod, resource, known_pod=allocated is not None)
    return None


def _normalise(text: str) -> str | None:
    bdf = parse_bdf(text)
    return str(bdf) if bdf is not None else None


def _normalised(device_ids: Iterable[str]) -> frozenset[str]:
    return frozenset(bdf for bdf in map(_normalise, device_ids) if bdf is not None)


def _refusal(bdf: str, pod: str, resource: str, known_pod: bool) -> Refusal:
    unknown = "" if known_pod else " (kubelet lists no such pod)"
    return Refusal(
        reason="HandoffRejected",
        subject=bdf,
        problem=(
            f"is not among the devices kubelet allocated to pod {pod}{unknown} for {resource};"
            " the handoff is forged or stale"
        ),
        fix=_FIX,
    )
