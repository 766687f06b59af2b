"""libvirtd forgets why an inactive domain stopped when it restarts: the reason reads as unknown,
which also means "never started". A guest that had finished (Succeeded or Failed, as the agent
last wrote), or that the agent last saw running, must stay off; only a domain the agent never
saw run is started. Found by R2."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handler.core.domain_state import Power, StopCause
from handler.core.planner import plan
from handler.core.status import Phase, VMIStatus, ready
from tests.core.test_planner import (
    DEVICES,
    DIGEST,
    NAME,
    SETTINGS,
    domain,
    kinds,
    observed,
    run_desired,
    running_status,
    written,
)


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
def test_a_finished_guest_stays_off_when_libvirtd_forgot_why_it_stopped(phase: Phase) -> None:
    last = VMIStatus(
        phase, NAME, (ready(False, "Stopped", "the guest powered itself off"),), DEVICES, spec_digest=DIGEST
    )
    result = plan(run_desired(), observed(domain(Power.SHUTOFF, StopCause.NEVER_STARTED), last), SETTINGS)
    assert result.actions == ()


def test_a_domain_defined_but_never_started_is_still_started() -> None:
    result = plan(run_desired(), observed(domain(Power.SHUTOFF, StopCause.NEVER_STARTED)), SETTINGS)
    assert kinds(result)[0] == "StartDomain"


def test_a_guest_last_seen_running_that_stopped_during_a_libvirtd_restart_is_succeeded_not_restarted() -> None:
    obs = observed(domain(Power.SHUTOFF, StopCause.NEVER_STARTED), running_status())
    result = plan(run_desired(), obs, SETTINGS)
    assert "StartDomain" not in kinds(result)
    status = written(result)
    assert status.phase is Phase.SUCCEEDED
    assert "libvirtd" in (status.condition("Ready") or ready(True)).message
    assert plan(run_desired(), replace(obs, status=status), SETTINGS).actions == ()
