"""The agent's engine: worker threads draining the keyed queue, periodic resync, and the
stop policy. Sources and sinks (manifest directory or Kubernetes) plug in from outside."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from handler.agent.keyed_queue import KeyedQueue
from handler.agent.reconciler import Outcome, Reconciler
from handler.agent.worker_pulse import WorkerPulse
from handler.core.backoff import Backoff
from handler.core.stop_budget import STOP_MARGIN_SECONDS, stop_extension
from handler.core.stop_policy import StopPolicy
from handler.core.vmi import key_of_domain

log = structlog.get_logger("qat_handler.agent")


RECONCILE_RETRY = Backoff(1.0, 300.0)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    workers: int = 4
    """Reconcile threads; one VMI is never worked on by two of them at once."""
    resync_seconds: float = 60.0
    """Every VMI is looked at this often even without events, healing anything missed."""
    retry: Backoff = RECONCILE_RETRY
    """Between failed reconciles of one VMI."""
    stop_margin_seconds: float = STOP_MARGIN_SECONDS - 10
    """Added to the largest grace period when waiting for guests at agent stop (a destroy may take
    libvirt 15 s); the rest of the core's margin is for the last status writes."""


class Engine:
    def __init__(
        self,
        reconciler: Reconciler,
        settings: EngineSettings,
        clock: Callable[[], float] = time.monotonic,
        extend_stop: Callable[[float], object] = lambda _seconds: None,
        queue: KeyedQueue | None = None,
    ) -> None:
        """``queue``: the work queue, when the reconciler was handed its ``add`` (see NodeRuntime)."""
        self.reconciler = reconciler
        self.settings = settings
        self.clock = clock
        self.extend_stop = extend_stop
        """Asks the service manager for this many seconds to stop (systemd's EXTEND_TIMEOUT_USEC)."""
        self.queue = queue if queue is not None else KeyedQueue(clock)
        self.pulse = WorkerPulse(clock)
        self._failures: dict[str, int] = {}
        self._threads: list[threading.Thread] = []

    # -- inputs -------------------------------------------------------------------------
    def enqueue(self, key: str, delay: float = 0.0) -> None:
        self.queue.add(key, delay)

    def on_domain_event(self, domain_name: str, kind: str) -> None:
        """Called from the dispatcher thread with each libvirt lifecycle event."""
        if self.reconciler.needs_pass(domain_name, kind):
            self.queue.add(key_of_domain(domain_name))

    def resync(self, background: bool = True) -> None:
        """Queue every VMI; a background sweep yields to changed VMIs and uses one worker at a time."""
        keys = set(self.reconciler.keys())
        try:
            keys |= {d.identity.key for d in self.reconciler.owned_domains() if d.identity}
        except Exception as error:  # libvirt down: the source's keys still get their turn
            log.warning("resync could not list domains", error=str(error))
        for key in keys:
            self.queue.add(key, background=background)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        managed = self.reconciler.owned_domains()
        self.reconciler.adopt(managed)
        log.info("adopted existing domains", count=len(managed))
        # Queued before any worker runs, so a key already queued by the source is not handed
        # to a worker and then marked for a second pass.
        self.resync(background=False)  # every VMI's first pass is urgent
        self.reconciler.start_timers()
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{index}", daemon=True)
            self.pulse.register(thread.name)
            thread.start()
            self._threads.append(thread)

    def wait_idle(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    def stop(self, policy: StopPolicy) -> None:
        if policy is StopPolicy.SHUTDOWN:
            self._halt_guests()
        else:
            log.info("agent stopping; guests keep running", policy=str(policy))
        self.queue.close()
        self.reconciler.stop_timers()
        for thread in self._threads:
            thread.join(timeout=10)

    def _halt_guests(self) -> None:
        self.reconciler.halt_guests()
        active = [d for d in self.reconciler.owned_domains() if d.active and d.identity]
        grace = max((d.identity.grace_seconds for d in active if d.identity), default=0)
        deadline = self.clock() + grace + self.settings.stop_margin_seconds
        extension = stop_extension(grace)
        if extension is not None:
            log.info("asking the service manager for more time to stop", seconds=extension, grace_seconds=grace)
            self.extend_stop(extension)
        running: list[str] = []
        log.info("agent stopping; shutting guests down", policy="shutdown", guests=len(active), grace_seconds=grace)
        for domain in active:
            assert domain.identity is not None
            self.queue.add(domain.identity.key)
        while self.clock() < deadline:
            running = [d.name for d in self.reconciler.owned_domains() if d.active]
            if not running:
                break
            time.sleep(0.2)
        else:
            log.error("guests still running at the stop deadline", domains=running)
        # One last pass for each guest writes its final status: libvirt's stop event may
        # still be on its way, and a requeue due later would never run once the queue closes.
        for domain in active:
            assert domain.identity is not None
            self.queue.add(domain.identity.key)
        self.queue.wait_idle(5.0)
        if not running:
            log.info("all guests are off", guests=len(active))

    # -- workers ------------------------------------------------------------------------
    def _work(self) -> None:
        name = threading.current_thread().name
        while True:
            self.pulse.waiting(name)
            key = self.queue.get(timeout=0.5)
            if key is None:
                if self.queue.closed:
                    return
                continue
            self.pulse.working(name)
            try:
                outcome = self.reconciler.reconcile(key)
            except Exception:
                log.exception("reconcile crashed", vmi=key)
                outcome = Outcome(None, failed=True)
            finally:
                self.queue.done(key)
            self._after(key, outcome)

    def _after(self, key: str, outcome: Outcome) -> None:
        if outcome.failed:
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            self.queue.add(key, self.settings.retry.delay(count))
            return
        self._failures.pop(key, None)
        if outcome.requeue_after is not None:
            self.queue.add(key, outcome.requeue_after)
