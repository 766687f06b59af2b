"""KubeVirt feature gates, from the seed's ``kubevirt-config`` ConfigMap and the KubeVirt CR."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from handler.core.refusal import Refusal

QAT_GATE = "QAT"
CONFIGMAP_NAME = "kubevirt-config"
"""The seed's gate list: ConfigMap <kubevirt namespace>/kubevirt-config, key feature-gates."""
GATE_OFF_MESSAGE = "QAT feature gate is not enabled in kubevirt-config"
"""The seed's message; ``gate_refusal(...).line()`` starts with it."""


def gates_from_configmap(configmap: Mapping[str, Any] | None) -> set[str]:
    data = (configmap or {}).get("data") or {}
    raw = data.get("feature-gates", "") if isinstance(data, Mapping) else ""
    return {gate.strip() for gate in str(raw).split(",") if gate.strip()}


def gates_from_kubevirt_cr(kubevirt: Mapping[str, Any] | None) -> set[str]:
    spec = (kubevirt or {}).get("spec") or {}
    config = (spec.get("configuration") or {}).get("developerConfiguration") or {}
    gates = config.get("featureGates") or []
    return {str(gate) for gate in gates if isinstance(gate, str)}


def gate_refusal(enabled: Iterable[str]) -> Refusal | None:
    if QAT_GATE in set(enabled):
        return None
    return Refusal(
        "FeatureGateDisabled",
        "QAT feature gate",
        "is not enabled in kubevirt-config",
        "add QAT to data.feature-gates of ConfigMap kubevirt/kubevirt-config "
        "(or to the KubeVirt CR's developerConfiguration.featureGates)",
    )
