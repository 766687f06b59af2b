"""Driving the real ``qat-handler agent`` CLI against qemu:///system from a test.

* :class:`Workspace`: a VMI directory and a state directory under /var/tmp, traversable by
  QEMU's user (libvirt-qemu), with helpers to write VMI manifests for the tiny guest.
* :class:`AgentProcess`: the agent as a subprocess logging JSON lines to a file.
* :class:`LifecycleEvents`: the test's own libvirt connection recording every lifecycle
  event with the wall-clock time it arrived, to time what the agent did independently.
* :func:`status_rows`: ``qat-handler status -o json`` as the operator would run it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import libvirt

from handler.virt.event_loop import ensure_event_loop
from tests.support.guest_image import GuestImage, read_serial
from tests.support.polling import wait_until

# libvirt prints every error (e.g. a lookup of a domain already gone) to stderr; the tests
# look at the exceptions instead, as the agent does.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

LIBVIRT_URI = "qemu:///system"
NAMESPACE = f"qhit-{os.getpid()}"
"""Every VMI of this test process lives here, so its domains are ``qhit-<pid>_<name>``."""
_DOMAIN_RE = re.compile(r"qhit-(\d+)_[a-z0-9-]+")


def domain_name(vmi_name: str) -> str:
    return f"{NAMESPACE}_{vmi_name}"


def key_of(vmi_name: str) -> str:
    return f"{NAMESPACE}/{vmi_name}"


# --------------------------------------------------------------------------- workspace


@dataclasses.dataclass
class Workspace:
    root: Path

    @classmethod
    def create(cls) -> Workspace:
        # mkdtemp makes 0700; QEMU runs as libvirt-qemu and must reach the serial logs.
        root = Path(tempfile.mkdtemp(prefix="qat-handler-it-", dir="/var/tmp"))
        os.chmod(root, 0o755)
        for sub in ("vmis", "state", "state/logs"):
            (root / sub).mkdir(mode=0o755)
            os.chmod(root / sub, 0o755)
        return cls(root)

    @property
    def vmi_dir(self) -> Path:
        return self.root / "vmis"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def serial_log(self, vmi_name: str) -> Path:
        return self.state_dir / "logs" / f"{domain_name(vmi_name)}.serial.log"

    def serial(self, vmi_name: str) -> str:
        return read_serial(self.serial_log(vmi_name))

    def manifest_path(self, vmi_name: str) -> Path:
        return self.vmi_dir / f"{vmi_name}.json"

    def add_vmi(
        self,
        vmi_name: str,
        image: GuestImage,
        *,
        grace: int = 30,
        qats: Iterable[tuple[str, str]] = (),
        env: dict[str, str] | None = None,
        devices_extra: dict[str, Any] | None = None,
        spec_extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write a VMI manifest that boots ``image`` (and its ``.env`` file); atomically, via rename."""
        devices: dict[str, Any] = {}
        qat_entries = [{"name": n, "deviceName": d} for n, d in qats]
        if qat_entries:
            devices["qats"] = qat_entries
        devices.update(devices_extra or {})
        manifest = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": vmi_name, "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "domain": {
                    "cpu": {"cores": 1},
                    "memory": {"guest": "256Mi"},
                    "devices": devices,
                    "firmware": {
                        "kernelBoot": {
                            "kernelArgs": image.cmdline,
                            "container": {"kernelPath": str(image.kernel), "initrdPath": str(image.initrd)},
                        }
                    },
                },
            },
        }
        manifest["spec"].update(spec_extra or {})
        if env is not None:
            _write_via_rename(self.vmi_dir / f"{vmi_name}.env", "".join(f"{k}={v}\n" for k, v in env.items()))
        path = self.manifest_path(vmi_name)
        _write_via_rename(path, json.dumps(manifest, indent=1))
        return path

    def remove_vmi(self, vmi_name: str) -> float:
        """Delete the manifest; returns the wall-clock time just before the unlink."""
        t = time.time()
        self.manifest_path(vmi_name).unlink()
        return t

    def status_file(self) -> dict[str, Any]:
        """The agent's status file as it is now (cheap; for polling)."""
        try:
            document = json.loads((self.state_dir / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return document.get("vmis") or {}


def _write_via_rename(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def status_rows(state_dir: Path) -> dict[str, dict[str, Any]]:
    """``qat-handler status -o json``, keyed by ``namespace/name``."""
    proc = subprocess.run(
        [sys.executable, "-m", "handler", "status", "--state-dir", str(state_dir), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"qat-handler status failed ({proc.returncode}): {proc.stderr}"
    return {f"{row['namespace']}/{row['name']}": row for row in json.loads(proc.stdout)}


def condition(row: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in row.get("conditions", []) if c.get("type") == kind), None)


# --------------------------------------------------------------------------- the agent


class AgentProcess:
    """``python -m handler agent ...`` with JSON logs on stdout, kept in ``log_path``."""

    def __init__(self, workspace: Workspace, *extra: str, on_stop: str = "shutdown", tag: str = "agent") -> None:
        self.workspace = workspace
        self.log_path = workspace.root / f"{tag}.jsonl"
        self.err_path = workspace.root / f"{tag}.stderr"
        argv = [
            sys.executable, "-m", "handler", "agent",
            "--vmi-dir", str(workspace.vmi_dir),
            "--state-dir", str(workspace.state_dir),
            "--connect", LIBVIRT_URI,
            "--domain-type", "qemu",
            "--on-stop", on_stop,
            "--log-format", "json",
            *extra,
        ]  # fmt: skip
        with open(self.log_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=_die_with_parent
            )
        self.started_at = time.time()
        self.exited_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[dict[str, Any]]:
        found = []
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        for raw in text.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict):
                    found.append(entry)
        return found

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """Log lines whose ``event`` is ``event`` and whose fields match."""
        return [
            line for line in self.lines()
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]  # fmt: skip

    def wait_log(self, event: str, timeout: float, **fields: Any) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            self._fail_if_exited(f"log line {event!r}")
            hits = self.find(event, **fields)
            return hits[0] if hits else None

        return wait_until(lambda: f"agent log line {event!r} {fields}\n{self.tail()}", check, timeout)  # type: ignore[no-any-return]

    def wait_first_sync(self, timeout: float = 60.0) -> None:
        self.wait_log("first sync done", timeout)

    def signal(self, signum: int = signal.SIGTERM) -> float:
        """Send ``signum``; returns the wall-clock time just before sending it."""
        t = time.time()
        self.proc.send_signal(signum)
        return t

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"agent still running {timeout:.0f} s after being told to stop\n{self.tail()}"
            ) from None
        if self.exited_at is None:
            self.exited_at = time.time()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, count: int = 30) -> str:
        out = self.log_path.read_text(errors="replace").splitlines()[-count:] if self.log_path.exists() else []
        err = self.err_path.read_text(errors="replace").strip() if self.err_path.exists() else ""
        return "agent log tail:\n" + "\n".join(out) + (f"\nagent stderr:\n{err}" if err else "")

    def _fail_if_exited(self, waiting_for: str) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"agent exited with {code} while waiting for {waiting_for}\n{self.tail()}")


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so no orphaned agent manages domains."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def log_time(line: dict[str, Any]) -> float:
    """The wall-clock time of a JSON log line (its ISO-8601 UTC ``timestamp``)."""
    return dt.datetime.fromisoformat(line["timestamp"]).timestamp()


# --------------------------------------------------------------------------- libvirt events


@dataclasses.dataclass(frozen=True)
class Lifecycle:
    at: float
    """Wall-clock time the event reached this process."""
    domain: str
    event: int
    detail: int


class LifecycleEvents:
    """Lifecycle events of every domain on its own connection, timestamped on arrival."""

    def __init__(self, uri: str = LIBVIRT_URI) -> None:
        ensure_event_loop()  # before open(), or this connection never delivers events
        self.conn = libvirt.open(uri)
        self._cond = threading.Condition()
        self._events: list[Lifecycle] = []
        self._callback = self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None
        )

    def _on_event(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        # Runs on libvirt's event thread: record and return.
        record = Lifecycle(time.time(), dom.name(), event, detail)
        with self._cond:
            self._events.append(record)
            self._cond.notify_all()

    def of(self, domain: str, event: int | None = None, *, since: float = 0.0) -> list[Lifecycle]:
        with self._cond:
            return [
                e for e in self._events
                if e.domain == domain and (event is None or e.event == event) and e.at >= since
            ]  # fmt: skip

    def wait_for(self, domain: str, event: int, timeout: float, *, since: float = 0.0) -> Lifecycle:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self._events if e.domain == domain and e.event == event and e.at >= since]
                if hits:
                    return hits[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.event, e.detail) for e in self._events if e.domain == domain]
                    raise AssertionError(
                        f"no lifecycle event {event} for {domain} within {timeout:.0f}s; seen (event, detail): {seen}"
                    )
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.domainEventDeregisterAny(self._callback)
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()


class QemuExit:
    """When a running domain's QEMU process ends (exits or turns zombie), polled every 10 ms.

    This is the moment the guest stops running. libvirt's STOPPED event can come up to
    ~2 s later on hosts whose PID 1 reaps orphans lazily (as on these test machines):
    a destroy waits until the QEMU process is reaped, not merely dead.
    """

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.pid = int(Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip())
        self.ended_at: float | None = None
        self._thread = threading.Thread(target=self._watch, name=f"qemu-exit-{domain}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        stat = Path(f"/proc/{self.pid}/stat")
        while True:
            try:
                text = stat.read_text()
            except OSError:
                break
            if text[text.rfind(")") + 2 : text.rfind(")") + 3] in ("Z", "X"):
                break
            time.sleep(0.01)
        self.ended_at = time.time()

    def wait(self, timeout: float) -> float:
        self._thread.join(timeout)
        if self.ended_at is None:
            raise AssertionError(f"QEMU of {self.domain} (pid {self.pid}) still runs after {timeout:.0f}s")
        return self.ended_at


# --------------------------------------------------------------------------- domain clean-up


def remove_domain(conn: Any, name: str) -> None:
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefine()


def ours_or_stale(name: str) -> bool:
    """A domain of this test process, or of a test process that no longer exists."""
    m = _DOMAIN_RE.fullmatch(name)
    if m is None:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_domains(conn: Any, names: Iterable[str] | None = None) -> list[str]:
    """Destroy and undefine ``names`` (default: every domain :func:`ours_or_stale` picks)."""
    if names is None:
        names = [d.name() for d in conn.listAllDomains(0) if ours_or_stale(d.name())]
    removed = []
    for name in names:
        remove_domain(conn, name)
        removed.append(name)
    return removed


def domain_ids(conn: Any, names: Iterable[str]) -> dict[str, int]:
    return {name: conn.lookupByName(name).ID() for name in names}


def domain_state(conn: Any, name: str) -> tuple[int, int] | None:
    try:
        state, reason = conn.lookupByName(name).state()
    except libvirt.libvirtError:
        return None
    return state, reason
