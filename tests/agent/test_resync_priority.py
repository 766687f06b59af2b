"""The periodic resync sweeps every VMI in the background: a VMI that changes meanwhile is
handed to a worker first, not after the sweep (the tail of the per-VMI latency, P2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from handler.agent.agent import Engine, EngineSettings
from handler.agent.reconciler import Reconciler
from handler.core.domain_state import ObservedDomain


class Source:
    def keys(self) -> Iterable[str]:
        return [f"ns/vm{index:03d}" for index in range(100)]


class Stub:
    source = Source()

    def keys(self) -> list[str]:
        return list(self.source.keys())

    def owned_domains(self) -> list[ObservedDomain]:
        return []

    def start_timers(self) -> None: ...


def test_a_changed_vmi_goes_before_the_resync_sweep() -> None:
    now = [0.0]
    engine = Engine(cast(Reconciler, Stub()), EngineSettings(workers=0), clock=lambda: now[0])
    engine.resync()
    now[0] = 1.0
    engine.enqueue("ns/new")
    order = []
    while (key := engine.queue.get(timeout=0)) is not None:
        order.append(key)
        engine.queue.done(key)
    assert order[0] == "ns/new"
    assert order[1:] == [f"ns/vm{index:03d}" for index in range(100)], "the sweep itself still covers every VMI"


def test_the_first_sync_at_start_is_not_held_to_one_worker() -> None:
    engine = Engine(cast(Reconciler, Stub()), EngineSettings(workers=0), clock=lambda: 0.0)
    engine.reconciler.adopt = lambda _domains: None  # type: ignore[method-assign]
    engine.start()
    handed = [engine.queue.get(timeout=0) for _ in range(4)]
    assert handed == ["ns/vm000", "ns/vm001", "ns/vm002", "ns/vm003"], "four workers each get a first pass"
    for key in handed:
        engine.queue.done(key)
    while (key := engine.queue.get(timeout=0)) is not None:  # the rest of the first sync
        engine.queue.done(key)
    engine.resync()  # a periodic sweep afterwards
    assert engine.queue.get(timeout=0) == "ns/vm000"
    assert engine.queue.get(timeout=0) is None, "the periodic sweep uses one worker at a time"
