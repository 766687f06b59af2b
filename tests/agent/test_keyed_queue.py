"""The keyed work queue: dedupe, earliest due time wins, one worker per key, close."""

from __future__ import annotations

import threading
import time
from collections import Counter

from handler.agent.keyed_queue import KeyedQueue
from tests.support.fake_clock import FakeClock


def drain(queue: KeyedQueue) -> list[str]:
    """Every key due now, each marked done at once (timeout 0: never waits on a fake clock)."""
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def test_duplicates_collapse_and_keys_come_out_in_due_order() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    for key in ("a", "b", "a", "a", "c", "b"):
        queue.add(key)
    assert queue.pending() == 3
    assert drain(queue) == ["a", "b", "c"]
    assert queue.pending() == 0


def test_a_delayed_key_is_not_due_before_its_time() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("a", 5.0)
    assert queue.get(timeout=0) is None
    clock.now += 4.99
    assert queue.get(timeout=0) is None
    clock.now += 0.01
    assert queue.get(timeout=0) == "a"


def test_the_earliest_due_time_wins() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("a", 10.0)
    queue.add("a", 2.0)  # earlier: replaces
    queue.add("a", 30.0)  # later: ignored
    assert queue.pending() == 1
    clock.now += 2.0
    assert drain(queue) == ["a"]
    clock.now += 30.0
    assert drain(queue) == [], "the superseded due times left nothing behind"


def test_negative_delay_counts_as_now() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("a", -5.0)
    assert queue.get(timeout=0) == "a"


def test_a_key_added_while_in_flight_comes_back_after_done() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    queue.add("b")
    assert queue.get(timeout=0) == "b", "a is in flight, so it is not handed out again"
    assert queue.get(timeout=0) is None
    queue.done("b")
    queue.done("a")
    assert queue.get(timeout=0) == "a"


def test_an_in_flight_key_keeps_its_delay_and_the_earliest_of_several() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a", 8.0)
    queue.add("a", 3.0)
    queue.done("a")
    assert queue.get(timeout=0) is None
    clock.now += 3.0
    assert queue.get(timeout=0) == "a"


def test_in_flight_key_not_re_added_does_not_come_back() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.get(timeout=0) is None
    assert queue.pending() == 0


def test_wait_idle_ignores_future_requeues() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("later", 60.0)
    assert queue.wait_idle(0) is True
    queue.add("now")
    assert queue.wait_idle(0) is False
    key = queue.get(timeout=0)
    assert queue.wait_idle(0) is False, "a key in flight is work"
    assert key is not None
    queue.done(key)
    assert queue.wait_idle(0) is True


def test_close_wakes_a_blocked_worker() -> None:
    queue = KeyedQueue(time.monotonic)
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    time.sleep(0.05)
    assert worker.is_alive(), "get() blocks while nothing is due"
    queue.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert got == [None]
    assert queue.closed
    queue.add("a")
    assert queue.get(timeout=0.01) is None, "a closed queue hands out nothing"


def test_get_wakes_up_when_a_key_is_added() -> None:
    queue = KeyedQueue(time.monotonic)
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=10)))
    worker.start()
    queue.add("a")
    worker.join(timeout=10)
    assert got == ["a"]


def test_never_two_workers_on_one_key() -> None:
    """Eight workers, five keys, keys re-added constantly (also while in flight)."""
    queue = KeyedQueue(time.monotonic)
    keys = [f"k{i}" for i in range(5)]
    lock = threading.Lock()
    in_flight: Counter[str] = Counter()
    worst: Counter[str] = Counter()
    handled: Counter[str] = Counter()
    stop_adding = threading.Event()

    def work() -> None:
        while (key := queue.get(timeout=0.2)) is not None or not queue.closed:
            if key is None:
                continue
            with lock:
                in_flight[key] += 1
                worst[key] = max(worst[key], in_flight[key])
            time.sleep(0.001)  # let other workers try to take the same key
            with lock:
                in_flight[key] -= 1
                handled[key] += 1
            queue.done(key)

    def produce() -> None:
        while not stop_adding.is_set():
            for key in keys:
                queue.add(key)
            time.sleep(0.0002)

    workers = [threading.Thread(target=work) for _ in range(8)]
    producers = [threading.Thread(target=produce) for _ in range(2)]
    for thread in workers + producers:
        thread.start()
    deadline = time.monotonic() + 10
    while min(handled[k] for k in keys) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop_adding.set()
    for thread in producers:
        thread.join(timeout=5)
    assert queue.wait_idle(10)
    queue.close()
    for thread in workers:
        thread.join(timeout=5)
    assert all(not thread.is_alive() for thread in workers)
    assert min(handled[k] for k in keys) >= 20, handled
    assert max(worst.values()) == 1, f"a key was worked on by two workers at once: {dict(worst)}"


def test_background_keys_wait_until_no_other_key_is_due() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    for key in ("a", "b", "c"):
        queue.add(key, background=True)
    clock.now += 1
    queue.add("new")
    queue.add("later", delay=5)  # not due: does not hold the sweep back
    assert drain(queue) == ["new", "a", "b", "c"]
    clock.now += 5
    assert drain(queue) == ["later"]


def test_a_key_added_both_ways_is_a_foreground_key_with_the_earliest_time() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("swept", background=True)
    queue.add("x", background=True)
    queue.add("changed")
    queue.add("changed", background=True)  # the sweep does not demote it
    clock.now += 1
    queue.add("x")  # promoted, keeps its earlier due time
    queue.add("y")
    assert drain(queue) == ["changed", "x", "y", "swept"]  # x before y: it kept its time
    assert queue.pending() == 0


def test_an_in_flight_key_swept_again_comes_back_in_the_background() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("busy")
    assert queue.get(timeout=0) == "busy"
    queue.add("busy", background=True)
    queue.add("other")
    queue.done("busy")
    assert drain(queue) == ["other", "busy"]


def test_wait_idle_counts_due_background_keys_as_work() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    queue.add("swept", background=True)
    assert not queue.wait_idle(0)
    assert drain(queue) == ["swept"]
    assert queue.wait_idle(0)


def test_one_background_key_at_a_time_while_foreground_keys_go_to_every_worker() -> None:
    clock = FakeClock()
    queue = KeyedQueue(clock)
    for key in ("s1", "s2", "s3"):
        queue.add(key, background=True)
    assert queue.get(timeout=0) == "s1"
    assert queue.get(timeout=0) is None, "a second worker does not sweep too"
    queue.add("f1")
    queue.add("f2")
    assert [queue.get(timeout=0), queue.get(timeout=0)] == ["f1", "f2"], "changed keys go to the idle workers"
    queue.done("s1")
    assert queue.get(timeout=0) == "s2"
    assert not queue.wait_idle(0), "a capped background key still counts as work"
    for key in ("f1", "f2", "s2"):
        queue.done(key)
    assert drain(queue) == ["s3"]


def test_a_worker_waiting_behind_the_background_cap_is_woken_when_the_sweeper_finishes() -> None:
    queue = KeyedQueue(time.monotonic)
    queue.add("s1", background=True)
    queue.add("s2", background=True)
    assert queue.get(timeout=0) == "s1"
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get(timeout=10)))
    waiter.start()
    time.sleep(0.05)  # the waiter blocks: s2 is due but capped
    assert got == []
    queue.done("s1")
    waiter.join(timeout=10)
    assert got == ["s2"]
