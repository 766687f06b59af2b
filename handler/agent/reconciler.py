"""One reconcile pass for one VMI: observe, ask the pure planner, carry out its actions.

The shell-side memory the planner needs lives in two objects of its own: the device gate
(claims, host checks, who waits for a VF) and the stop tracker (stop progress, destroys
in flight). The reconciler turns port failures into a Synchronized=False status plus a retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from handler.agent.claims import DeviceClaims
from handler.agent.device_gate import DeviceGate
from handler.agent.echo_filter import EchoFilter
from handler.agent.guest_networks import gate_networks, observe_addresses
from handler.agent.ports import (
    AddressProbe,
    DesiredSource,
    DeviceAllocator,
    DeviceInspector,
    GuestFilePreparer,
    Hypervisor,
    NetworkResolver,
    StatusSink,
)
from handler.agent.stop_tracker import StopTracker
from handler.core.actions import (
    Action,
    ClaimVMI,
    DefineDomain,
    DestroyDomain,
    ForgetVMI,
    RecordEvent,
    RequestShutdown,
    StartDomain,
    UndefineDomain,
    WriteStatus,
)
from handler.core.desired import Desired, Intent, Observed
from handler.core.domain_state import ObservedDomain
from handler.core.planner import Plan, PlanSettings, plan
from handler.core.port_error import PortError
from handler.core.status import VMIStatus
from handler.core.sync_failure import sync_failed
from handler.core.vmi import key_of_domain
from handler.ops.metrics import Metrics

log = structlog.get_logger("qat_handler.reconciler")

SHUTDOWN_OUTCOMES = {"Stopped": "guest_poweroff", "Destroyed": "destroyed"}
"""Event reasons that end a stop, and the outcome label they count under."""


@dataclass(frozen=True, slots=True)
class Outcome:
    requeue_after: float | None
    failed: bool = False


class Reconciler:
    def __init__(
        self,
        source: DesiredSource,
        hypervisor: Hypervisor,
        sink: StatusSink,
        settings: PlanSettings,
        inspector: DeviceInspector | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        allocator: DeviceAllocator | None = None,
        networks: NetworkResolver | None = None,
        addresses: AddressProbe | None = None,
        guest_files: GuestFilePreparer | None = None,
        requeue: Callable[[str], None] = lambda _key: None,
    ) -> None:
        """``requeue`` puts a VMI back on the work queue: when a destroy ends, or a VF it waits for
        comes free."""
        self.source = source
        self.hypervisor = hypervisor
        self.sink = sink
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.networks = networks
        self.addresses = addresses
        self.guest_files = guest_files
        self.devices = DeviceGate(hypervisor, settings.render.owner, requeue, inspector, allocator)
        self.stops = StopTracker(
            lambda name: self.hypervisor.destroy(name),
            requeue,
            clock,
            metrics,
            lambda name: self.hypervisor.observe_alone(name),
            lambda key: self._desired(key).intent,
        )
        self.echoes = EchoFilter(clock)
        """The events our own define and start will cause; the engine drops them."""
        self._memory_lock = threading.Lock()
        self._address_polls: dict[str, int] = {}
        """Lease look-ups made so far per running guest whose NIC has no address yet (for backoff)."""
        self._phases: dict[str, tuple[str, bool]] = {}
        """Last written phase per VMI and whether it is in sync: for STATUS= lines and metrics."""
        self._halting = False

    @property
    def claims(self) -> DeviceClaims:
        return self.devices.claims

    def knows(self, key: str) -> bool:
        return self.source.knows(key)

    def keys(self) -> list[str]:
        """Every VMI the source wants something for."""
        return list(self.source.keys())

    def needs_pass(self, domain_name: str, kind: str) -> bool:
        """Whether a lifecycle event calls for a pass over its VMI: not when it is the echo of
        this agent's own define or start, whose pass has already seen what it did."""
        # A define/undefine of a domain that is not one of our VMIs may change which VFs are taken.
        if kind in ("defined", "undefined") and not self.knows(key_of_domain(domain_name)):
            self.devices.foreign.invalidate()
        return not self.echoes.swallow(domain_name, kind)

    def start_timers(self) -> None:
        """Start the grace deadline timer (the engine does, with its workers)."""
        self.stops.timer.start()

    def stop_timers(self) -> None:
        self.stops.timer.close()

    def halt_guests(self) -> None:
        """The agent stops with the shutdown policy: from now on every guest that should run halts."""
        self._halting = True

    def owned_domains(self) -> list[ObservedDomain]:
        """The domains this agent instance manages (other agents' domains on the same libvirt excluded)."""
        owner = self.settings.render.owner
        return [d for d in self.hypervisor.list_managed() if d.identity is not None and d.identity.owned_by(owner)]

    def adopt(self, domains: list[ObservedDomain]) -> None:
        """Rebuild device claims from the metadata of domains that already exist."""
        self.devices.adopt(domains)

    def reconcile(self, key: str) -> Outcome:
        started = time.perf_counter()
        try:
            return self._reconcile(key)
        finally:
            if self.metrics is not None:
                self.metrics.observe_reconcile(time.perf_counter() - started)

    def _desired(self, key: str) -> Desired:
        """What the source wants for ``key``; a guest that should run halts while the agent stops."""
        desired = self.source.desired(key) or Desired(key, Intent.REMOVE, None)
        if self._halting and desired.intent is Intent.RUN:
            desired = replace(desired, intent=Intent.HALT)
        return desired

    def _reconcile(self, key: str) -> Outcome:
        desired = self._desired(key)
        name = desired.domain_name
        bound = log.bind(vmi=key, domain=name, uid=desired.vmi.uid if desired.vmi else None)
        try:
            domain = self.hypervisor.observe(name)
            known = desired.devices or (domain.identity.devices if domain and domain.identity else ())
            if known:
                bound = bound.bind(bdfs=[str(device.bdf) for device in known])
            if desired.intent is Intent.RUN:
                self.stops.forget(key)
            desired = gate_networks(self.networks, self.devices.judge(desired, domain), domain)
            observed = Observed(
                domain,
                self.sink.last_status(key),
                self.stops.get(key),
                self.clock(),
                observe_addresses(self.addresses, desired, domain),
                self._address_polls.get(key, 0),
            )
            result: Plan = plan(desired, observed, self.settings)
            result = self._with_guest_files(desired, observed, result)
            uid = domain.identity.uid if domain is not None and domain.identity is not None else None
            self._execute(key, result.actions, bound, uid)
            self._count_address_poll(key, desired, result)
            forgotten = any(isinstance(action, ForgetVMI) for action in result.actions)
            if observed.status is not None and not forgotten:
                self._remember_adopted(key, observed.status)
        except PortError as error:
            bound.warning("sync failed", reason=error.reason, error=str(error))
            if self.metrics is not None:
                self.metrics.count_error(error.reason)
            try:
                self._execute(key, sync_failed(self.sink.last_status(key), name, error.reason, str(error)), bound)
            except PortError as also:
                bound.warning("could not report the failure", error=str(also))
            return Outcome(None, failed=True)
        if result.requeue_after is None:
            return Outcome(None)
        # Counted from the observation the plan was made on, not from the end of this pass.
        return Outcome(max(0.0, observed.now + result.requeue_after - self.clock()))

    def _with_guest_files(self, desired: Desired, observed: Observed, result: Plan) -> Plan:
        """Prepare the guest's files before a define or start; if they cannot be ready, plan
        again with the refusal, so it shows like any other and the VMI is looked at again."""
        if self.guest_files is None or desired.vmi is None:
            return result
        if not any(isinstance(action, (DefineDomain, StartDomain)) for action in result.actions):
            return result
        prepared = self.guest_files.prepare(desired.vmi)
        if prepared.refusal is None:
            return result
        if observed.domain is None:  # nothing uses what was made so far; it is made again when ready
            self.guest_files.remove(desired.vmi.uid)
        blocked = plan(replace(desired, blocked=prepared.refusal), observed, self.settings)
        return replace(blocked, requeue_after=prepared.retry_after)

    def _execute(
        self,
        key: str,
        actions: tuple[Action, ...],
        bound: structlog.typing.FilteringBoundLogger,
        uid: str | None = None,
    ) -> None:
        # One info line per transition: a start whose Started event follows says it there.
        announced = any(isinstance(action, RecordEvent) and action.reason == "Started" for action in actions)
        for action in actions:
            self._apply(key, action, bound, uid, announced)

    def _apply(
        self,
        key: str,
        action: Action,
        bound: structlog.typing.FilteringBoundLogger,
        uid: str | None = None,
        announced: bool = False,
    ) -> None:
        match action:
            case ClaimVMI():
                self.sink.claim(key)
            case DefineDomain(name=name, xml=xml):
                self._echoing(name, "defined", lambda: self.hypervisor.define(xml))
                bound.debug("domain defined")
            case StartDomain(name=name):
                self._echoing(name, "started", lambda: self.hypervisor.start(name))
                (bound.debug if announced else bound.info)("domain started")
            case RequestShutdown(name=name, attempt=attempt, grace_seconds=grace):
                self.hypervisor.request_shutdown(name)
                self.stops.pressed(key, attempt, grace)
                bound.info("ACPI shutdown requested", attempt=attempt)
            case DestroyDomain(name=name, after_seconds=after, deadline=deadline, repeats=repeats):
                self.stops.destroy(key, name, after, deadline, repeats, bound)
            case UndefineDomain(name=name):
                self.hypervisor.undefine(name)
                bound.info("domain undefined")
                if self.guest_files is not None and uid is not None:
                    self.guest_files.remove(uid)
                self.devices.release(key)
            case WriteStatus(status=status):
                self.sink.write(key, status)
                synced = status.condition("Synchronized")
                with self._memory_lock:
                    self._phases[key] = (str(status.phase), synced is None or synced.status)
            case RecordEvent():
                self.sink.record_event(key, action)
                if self.metrics is not None and action.reason in SHUTDOWN_OUTCOMES:
                    self.metrics.count_shutdown(SHUTDOWN_OUTCOMES[action.reason])
                emit = bound.warning if action.warning else bound.info
                emit(action.message, reason=action.reason)
            case ForgetVMI():
                known = self.sink.last_status(key) is not None
                self.sink.forget(key)
                with self._memory_lock:
                    self._phases.pop(key, None)
                self.stops.forget(key)
                # Said once: later passes over the same gone VMI (its own echo events) stay quiet.
                (bound.info if known else bound.debug)("VMI forgotten")
                self.devices.release(key)
                with self._memory_lock:
                    self._address_polls.pop(key, None)

    def _echoing(self, name: str, kind: str, call: Callable[[], None]) -> None:
        """Make a call whose lifecycle event would only bring this VMI back for a pass with
        nothing to do. Expected before the call, as libvirt may deliver it before the call returns."""
        self.echoes.expect(name, kind)
        try:
            call()
        except BaseException:
            self.echoes.withdraw(name, kind)
            raise

    def _count_address_poll(self, key: str, desired: Desired, result: Plan) -> None:
        polling = desired.intent is Intent.RUN and desired.vmi is not None and bool(desired.vmi.interfaces)
        with self._memory_lock:
            if polling and result.requeue_after is not None:
                self._address_polls[key] = self._address_polls.get(key, 0) + 1
            else:
                self._address_polls.pop(key, None)

    def _remember_adopted(self, key: str, status: VMIStatus) -> None:
        """Count a status this agent did not write itself (it was there when the agent started)."""
        synced = status.condition("Synchronized")
        with self._memory_lock:
            self._phases.setdefault(key, (str(status.phase), synced is None or synced.status))

    def summary(self) -> tuple[dict[str, int], int]:
        """VMIs per phase, and how many are out of sync (Synchronized=False)."""
        with self._memory_lock:
            values = list(self._phases.values())
        counts: dict[str, int] = {}
        for phase, _ in values:
            counts[phase] = counts.get(phase, 0) + 1
        return counts, sum(1 for _, ok in values if not ok)
