"""The launcher-to-agent handoff: what a VMI's pod tells the node agent about itself.

Device plugins put VF addresses only into the container's environment, never into the
pod spec, so the launcher (the pod's entrypoint) copies its device variables into a
small versioned JSON file in its own per-pod slot on the node. It carries no XML.
The reply (``AgentReport``) goes the other way, into the same slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handler.core.fields import integer, mapping, string
from handler.core.refusal import Refusal, Refused

HANDOFF_VERSION = 1
HANDOFF_FILE = "handoff.json"
REPORT_FILE = "agent.json"


@dataclass(frozen=True, slots=True)
class Handoff:
    namespace: str
    name: str
    vmi_uid: str
    pod_uid: str
    env: tuple[tuple[str, str], ...]
    """Only the device variables (``PCI_RESOURCE_*``, ``QATn``), sorted."""
    stop_requested: bool = False
    """The pod got SIGTERM: shut the guest down, then report it off."""
    grace_seconds: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def env_map(self) -> dict[str, str]:
        return dict(self.env)


def handoff_to_json(handoff: Handoff) -> dict[str, Any]:
    return {
        "version": HANDOFF_VERSION,
        "vmi": {"namespace": handoff.namespace, "name": handoff.name, "uid": handoff.vmi_uid},
        "podUID": handoff.pod_uid,
        "env": dict(handoff.env),
        "stopRequested": handoff.stop_requested,
        "graceSeconds": handoff.grace_seconds,
    }


def handoff_from_json(data: Any, source: str) -> Handoff:
    """Parse a handoff file's content or raise Refused naming the file and field."""
    doc = mapping(data, source)
    version = integer(doc.get("version"), f"{source} version", default=0, low=0, high=1_000)
    if version != HANDOFF_VERSION:
        raise Refused(
            Refusal(
                "HandoffInvalid",
                f"{source} version",
                f"is {version}, this agent reads version {HANDOFF_VERSION}",
                "run launcher and agent from the same qat-handler release",
            )
        )
    vmi = mapping(doc.get("vmi"), f"{source} vmi")
    env = mapping(doc.get("env"), f"{source} env")
    grace = doc.get("graceSeconds")
    return Handoff(
        namespace=string(vmi.get("namespace"), f"{source} vmi.namespace"),
        name=string(vmi.get("name"), f"{source} vmi.name"),
        vmi_uid=string(vmi.get("uid"), f"{source} vmi.uid"),
        pod_uid=string(doc.get("podUID"), f"{source} podUID"),
        env=tuple(sorted((str(k), str(v)) for k, v in env.items())),
        stop_requested=doc.get("stopRequested") is True,
        grace_seconds=grace if isinstance(grace, int) and not isinstance(grace, bool) else None,
    )


@dataclass(frozen=True, slots=True)
class AgentReport:
    """What the agent tells a launcher about its VMI's guest."""

    vmi_uid: str
    phase: str
    guest_off: bool
    message: str = ""


def report_to_json(report: AgentReport) -> dict[str, Any]:
    return {
        "version": HANDOFF_VERSION,
        "vmiUID": report.vmi_uid,
        "phase": report.phase,
        "guestOff": report.guest_off,
        "message": report.message,
    }


def report_from_json(data: Mapping[str, Any]) -> AgentReport | None:
    if not isinstance(data, Mapping) or data.get("version") != HANDOFF_VERSION:
        return None
    return AgentReport(
        vmi_uid=str(data.get("vmiUID", "")),
        phase=str(data.get("phase", "")),
        guest_off=data.get("guestOff") is True,
        message=str(data.get("message", "")),
    )
