"""How long each party waits during a pod shutdown, with KubeVirt's margins.

The guest gets the VMI's grace period; the launcher waits a little longer for the agent
to report the guest off; the pod's own grace is longer still, so kubelet never kills
the launcher while the agent is still stopping the guest.
"""

from __future__ import annotations

LAUNCHER_MARGIN_SECONDS = 15
POD_MARGIN_SECONDS = 30


def launcher_grace(vmi_grace_seconds: int) -> int:
    return vmi_grace_seconds + LAUNCHER_MARGIN_SECONDS


def pod_grace(vmi_grace_seconds: int) -> int:
    return vmi_grace_seconds + POD_MARGIN_SECONDS
