"""Leader election against the fake API server, with a fake clock: one leader, takeover in time."""

from __future__ import annotations

import pytest

from handler.controller.lease import LeaderElector, default_identity
from handler.core.leader_lease import LeaseTiming
from tests.support.fakekube import FakeApiServer

TIMING = LeaseTiming()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(server: FakeApiServer, identity: str, clock: FakeClock) -> LeaderElector:
    return LeaderElector(server.api_client(), "qat-handler", "qat-handler-controller", identity, TIMING, clock)


def holder(server: FakeApiServer) -> str:
    lease = server.get_object("leases", "qat-handler", "qat-handler-controller")
    assert lease is not None
    return str(lease["spec"]["holderIdentity"])


def test_one_leader_and_a_standby_that_takes_over_within_15_seconds(server: FakeApiServer) -> None:
    clock = FakeClock()
    a, b = elector(server, "a", clock), elector(server, "b", clock)
    assert a.try_once() and not b.try_once()
    assert holder(server) == "a"
    # a renews on time: b never gets it
    for _ in range(10):
        clock.now += TIMING.retry_seconds
        assert a.try_once() and not b.try_once()
    # a dies (no more renewals); b keeps trying every retry period
    died_at = clock.now
    while not b.try_once():
        clock.now += TIMING.retry_seconds
        assert clock.now - died_at <= 15, "the standby did not take over within 15 s"
    assert clock.now - died_at >= TIMING.duration_seconds - TIMING.retry_seconds
    assert holder(server) == "b"
    lease = server.get_object("leases", "qat-handler", "qat-handler-controller")
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_stops_before_the_standby_starts(server: FakeApiServer) -> None:
    clock = FakeClock()
    a, b = elector(server, "a", clock), elector(server, "b", clock)
    assert a.try_once() and not b.try_once()
    server.fail_next("PUT", "/leases/", 503, times=100)
    still_a = []
    while True:
        clock.now += TIMING.retry_seconds
        still_a.append(a.try_once())
        if not still_a[-1]:
            break
    lost_at = clock.now
    server.clear_faults()
    assert not b.try_once(), "the lease has not expired yet when a stops acting"
    assert lost_at - 1000.0 <= TIMING.renew_deadline_seconds + TIMING.retry_seconds
    assert lost_at - 1000.0 < TIMING.duration_seconds, "a stopped acting before its lease could pass on"


def test_release_hands_over_at_once(server: FakeApiServer) -> None:
    clock = FakeClock()
    a, b = elector(server, "a", clock), elector(server, "b", clock)
    assert a.try_once() and not b.try_once()
    a.release()
    assert not a.leading
    assert b.try_once(), "a released lease is taken without waiting for it to expire"


def test_two_candidates_racing_for_a_new_lease_make_one_leader(server: FakeApiServer) -> None:
    clock = FakeClock()
    electors = [elector(server, f"r{i}", clock) for i in range(4)]
    assert sum(e.try_once() for e in electors) == 1


def test_identity_is_the_pod_name_else_unique_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "qat-handler-controller-7d9f-abcde")
    assert default_identity() == "qat-handler-controller-7d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    first, second = default_identity(), default_identity()
    assert first != second, "two replicas on one host must never share an identity"
