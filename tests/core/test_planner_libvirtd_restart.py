"""libvirtd forgets why an inactive domain stopped when it restarts: the reason reads as unknown,
which also means "never started". A guest that had finished (Succeeded or Failed, as the agent
last wrote) must stay off; only a domain with no terminal status yet is started. Found by R2."""

from __future__ import annotations

import pytest

from handler.core.domain_state import Power, StopCause
from handler.core.planner import plan
from handler.core.status import Phase, VMIStatus, ready
from tests.core.test_planner import DEVICES, DIGEST, NAME, SETTINGS, domain, kinds, observed, run_desired


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
