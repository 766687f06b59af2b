"""Part 3: restart the agent on a real libvirtd and prove that no guest noticed.

100 tiny device-less guests (16 MiB, no OS, TCG) are started by agent A. A is stopped with
``--on-stop keep`` and agent B starts on the same state directory. Measured: B's time to
READY=1 (sd_notify, sent once every VMI has had its first pass); checked: every domain keeps
its ID, no DEFINED/UNDEFINED/STARTED/STOPPED (or any) lifecycle event for our domains arrives
during the hand-over, and the status file reports every VMI Running.

libvirt's test driver keeps no state across processes, so this part needs qemu:///system.
An agent leaves domains recorded as another agent's alone, but adopts qat-handler domains with
no owner recorded, so the run waits (then gives up) while any are present, and checks again
before the second agent starts. ``--private-libvirtd`` avoids sharing altogether.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import libvirt
from bench_domains import remove_domains
from processes import NotifySocket, StatusFile, peak_rss_kib, stop, wait_cpu_idle
from throughput import agent_settings
from workload import NAMESPACE, Workload

from handler.core.domain_identity import METADATA_NS, read_identity_element

HERE = Path(__file__).resolve().parent
_EVENT_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "DEFINED",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "UNDEFINED",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "STARTED",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "SUSPENDED",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "RESUMED",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "STOPPED",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "SHUTDOWN",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "CRASHED",
}


@dataclass(frozen=True, slots=True)
class Restart:
    domains: int
    first_start_seconds: float
    """Agent A, from spawn to every guest Running (100 QEMU starts; context only)."""
    bare_start_seconds: float
    """A bare loop defining and starting the same domain XMLs one after another on the same
    daemon, once A's guests are gone: what a real libvirtd's starts cost without the agent."""
    stop_seconds: float
    """Agent A, from SIGTERM to exit, with --on-stop keep."""
    steady_seconds: float
    """Agent B, from spawn (interpreter and imports included) to READY=1."""
    steady_from_cli_seconds: float
    """Agent B, from its CLI start (imports done) to READY=1."""
    baseline_seconds: float
    """Open a connection, list the domains and read each one's state and metadata."""
    ids_changed: tuple[str, ...]
    events: tuple[str, ...]
    """Lifecycle events for our domains from A's SIGTERM until 1 s after B was ready."""
    not_running: tuple[str, ...]
    """VMIs whose status (on disk, after B was ready) is not Running."""
    agent_peak_kib: int


def measure(workload: Workload, work: Path, uri: str, wait_alone: float) -> Restart:
    listener = EventListener(uri)  # first: the event loop must exist before any connection opens
    owner = agent_settings(_agent_args(workload, uri)).render.owner
    try:
        wait_until_alone(uri, owner, wait_alone)
    except SharedLibvirt:
        listener.close()
        raise
    conn = libvirt.open(uri)
    notify = NotifySocket(work / "notify.sock")
    agents: list[subprocess.Popen[bytes]] = []
    try:
        _progress(f"agent A starts {len(workload.names)} guests")
        spawned = time.monotonic()
        first = _spawn(workload, work / "agent-a", uri, notify, agents)
        notify.wait_for("READY=1", first, timeout=600)
        keys = {f"{NAMESPACE}/{name}" for name in workload.names}
        StatusFile(workload.state_dir / "status.json").wait_running(keys, first, timeout=60)
        first_start = time.monotonic() - spawned
        wait_cpu_idle(first.pid)
        names = [f"{NAMESPACE}_{name}" for name in workload.names]
        xmls = [conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) for name in names]
        before = {name: conn.lookupByName(name).ID() for name in names}
        _progress("stopping agent A (--on-stop keep) and starting agent B")
        stopping = listener.since = time.monotonic()
        stop(first)
        stop_seconds = time.monotonic() - stopping
        wait_until_alone(uri, owner, 0)
        spawned = time.monotonic()
        second = _spawn(workload, work / "agent-b", uri, notify, agents)
        ready = notify.wait_for("READY=1", second, timeout=120)
        cli_started = float((work / "agent-b.start").read_text().split()[0])
        vmis = StatusFile(workload.state_dir / "status.json").changed() or {}
        time.sleep(1.0)
        wait_cpu_idle(second.pid)
        after = {name: conn.lookupByName(name).ID() for name in names}
        result = Restart(
            domains=len(names),
            first_start_seconds=first_start,
            bare_start_seconds=0.0,
            stop_seconds=stop_seconds,
            steady_seconds=ready - spawned,
            steady_from_cli_seconds=ready - cli_started,
            baseline_seconds=bare_listing(uri),
            ids_changed=tuple(name for name in names if before[name] != after[name]),
            events=tuple(listener.seen()),
            not_running=tuple(sorted(k for k in keys if vmis.get(k, {}).get("phase") != "Running")),
            agent_peak_kib=peak_rss_kib(second.pid),
        )
    finally:
        for agent in agents:
            stop(agent)
        notify.close()
        _progress("removing the guests")
        remove_domains(conn)
        _progress("guests removed")
        listener.close()
    try:
        _progress(f"bare loop: define and start the same {len(xmls)} domains one after another")
        bare = bare_starts(conn, xmls)
    finally:
        remove_domains(conn)
        conn.close()
    return replace(result, bare_start_seconds=bare)


def bare_starts(conn: libvirt.virConnect, xmls: list[str]) -> float:
    """The floor for the first start: each domain defined and started in turn, as a script would."""
    started = time.monotonic()
    for xml in xmls:
        conn.defineXML(xml).create()
    return time.monotonic() - started


class SharedLibvirt(RuntimeError):
    """qat-handler domains without an owner are on this libvirtd; our agent would adopt and remove them."""


def wait_until_alone(uri: str, owner: str, timeout: float) -> None:
    """Agents leave each other's domains alone, but a domain with no owner recorded (written before
    owners existed) is everyone's: wait up to ``timeout`` for such domains to go."""
    deadline = time.monotonic() + timeout
    while others := _adoptable(uri, owner):
        if time.monotonic() >= deadline:
            raise SharedLibvirt(
                f"{uri} holds {len(others)} qat-handler domain(s) with no owner ({', '.join(others[:3])}); "
                "an agent started beside them would adopt and remove them"
            )
        time.sleep(2.0)


def _adoptable(uri: str, owner: str) -> list[str]:
    conn = libvirt.open(uri)
    try:
        return sorted(
            dom.name()
            for dom in conn.listAllDomains(0)
            if not dom.name().startswith(f"{NAMESPACE}_") and _owned_by(dom, owner)
        )
    finally:
        conn.close()


def bare_listing(uri: str) -> float:
    """The floor for a restart: what any agent must do to learn what is running."""
    started = time.monotonic()
    conn = libvirt.open(uri)
    for dom in conn.listAllDomains(0):
        dom.state()
        with contextlib.suppress(libvirt.libvirtError):  # not every domain carries our metadata
            read_identity_element(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
    conn.close()
    return time.monotonic() - started


def _agent_args(workload: Workload, uri: str) -> list[str]:
    return [
        "--vmi-dir", str(workload.vmi_dir),
        "--connect", uri,
        "--state-dir", str(workload.state_dir),
        "--domain-type", "qemu",
        "--on-stop", "keep",
        "--log-format", "json",
    ]  # fmt: skip


def _progress(message: str) -> None:
    print(f"  restart: {message} ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)


def _owned_by(dom: libvirt.virDomain, owner: str) -> bool:
    try:
        identity = read_identity_element(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
    except libvirt.libvirtError:
        return False
    return identity is not None and identity.owned_by(owner)


def _spawn(
    workload: Workload, base: Path, uri: str, notify: NotifySocket, agents: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    args = _agent_args(workload, uri)
    start_file = base.with_suffix(".start")
    with base.with_suffix(".log").open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "agent_child.py"), str(start_file), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=notify.env(),
        )
    agents.append(child)
    return child


@dataclass
class EventListener:
    """Our own libvirt connection and event loop, recording lifecycle events for our domains."""

    uri: str
    since: float = float("inf")
    _events: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        libvirt.virEventRegisterDefaultImpl()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="bench-events", daemon=True)
        self._thread.start()
        self._conn = libvirt.open(self.uri)
        self._conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)

    def seen(self) -> list[str]:
        return [text for at, text in self._events if at >= self.since]

    def close(self) -> None:
        self._running = False
        self._conn.close()

    def _loop(self) -> None:
        while self._running:
            libvirt.virEventRunDefaultImpl()

    def _on_event(self, _conn: object, dom: libvirt.virDomain, event: int, detail: int, _opaque: object) -> None:
        name = dom.name()
        if name.startswith(f"{NAMESPACE}_"):
            self._events.append((time.monotonic(), f"{name} {_EVENT_NAMES.get(event, event)}/{detail}"))
