"""A fake kubelet for one node: it runs each pod bound to the node as local processes.

For a newly bound pod it allocates the devices the containers ask for (``limits`` of the
node's extended resources) from the node's ``NodeDevices``, starts one process per
container (see ``pod_process``) and marks the pod ``Running`` and ``Ready``. When every
process has exited the devices are freed and the pod is ``Succeeded`` (all exited 0) or
``Failed``; containers are never restarted (``restartPolicy: Never``, as launcher pods).
A pod whose devices are not free is ``Failed`` with ``UnexpectedAdmissionError``, as
kubelet's admission does; a missing ``hostPath`` of ``type: Directory`` keeps it pending.

Deletion follows kubelet: when the pod is marked for deletion, each process gets SIGTERM,
then SIGKILL once ``deletionGracePeriodSeconds`` have passed; once all have exited the
kubelet deletes the pod with grace 0, and it is gone. A pod removed outright (forced) has
its processes killed at once. With ``pod_resources`` (``tests/support/fake_kubelet.py``)
it also answers kubelet's pod-resources API with the devices each pod holds.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import patch as patches
from .devices import AllocationFailed, NodeDevices, device_env
from .errors import ApiError
from .pod_process import REPO, MountPending, SpecError, plan_container
from .pod_status import failed_status, running_status, terminated_status, waiting_status
from .quantities import container_requests
from .resources import Obj, Registry
from .store import Store, now_rfc3339


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    containers: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    grace: int | None = None
    """The grace the processes were given when told to stop (None: still running)."""
    done: bool = False


class FakeKubelet:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        node_name: str,
        node_root: Path,
        devices: NodeDevices,
        pod_resources: Any = None,
    ) -> None:
        self._store = store
        self._pods = registry.by_plural("pods")
        self.node_name = node_name
        self.node_root = node_root
        self.devices = devices
        self.pod_resources = pod_resources
        self._lock = threading.Lock()
        self._runs: dict[str, PodRun] = {}
        self.pods_dir = node_root / "var/lib/kubelet/pods"

    # -- what tests look at ------------------------------------------------------------------
    def run_of(self, pod_uid: str) -> PodRun | None:
        with self._lock:
            return self._runs.get(pod_uid)

    def log_of(self, pod_uid: str, container: str) -> str:
        path = self.pods_dir / pod_uid / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the loop's entry point --------------------------------------------------------------
    def sync(self) -> None:
        with self._store.cond:
            pods, _ = self._store.list_objects(self._pods, None)
        mine = {p["metadata"]["uid"]: p for p in pods if (p.get("spec") or {}).get("nodeName") == self.node_name}
        with self._lock:
            forgotten = [run for uid, run in self._runs.items() if uid not in mine]
        for run in forgotten:  # removed outright: nothing left to wait for
            self._stop(run, grace=0)
            if run.done:
                with self._lock:
                    self._runs.pop(run.uid, None)
        for pod in mine.values():
            self._sync_pod(pod)

    def _sync_pod(self, pod: Obj) -> None:
        meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase", "Pending")
        run = self.run_of(meta["uid"])
        if meta.get("deletionTimestamp"):
            if run is None or run.done:
                self._finish_deletion(pod)
            else:
                self._stop(run, grace=int(meta.get("deletionGracePeriodSeconds") or 0))
        elif run is None and phase == "Pending":
            self._start(pod)

    # -- starting ----------------------------------------------------------------------------
    def _start(self, pod: Obj) -> None:
        meta = pod["metadata"]
        pod_dir = self.pods_dir / meta["uid"]
        pod_dir.mkdir(parents=True, exist_ok=True)
        containers = (pod.get("spec") or {}).get("containers") or []
        identity = (meta["namespace"], meta["name"], meta["uid"])
        try:
            launches = [plan_container(pod, c, {}, self.node_root, pod_dir) for c in containers]
            device_vars = [self._allocate(identity, c) for c in containers]
        except MountPending as pending:
            self._write_status(pod, waiting_status(pod, "ContainerCreating", str(pending)))
            return
        except (SpecError, AllocationFailed) as error:
            self.devices.release(meta["uid"])
            reason = "UnexpectedAdmissionError" if isinstance(error, AllocationFailed) else "CreateContainerConfigError"
            self._write_status(pod, failed_status(pod, reason, str(error)))
            return
        run = PodRun(meta["namespace"], meta["name"], meta["uid"], len(launches), started_at=now_rfc3339())
        with self._lock:
            self._runs[run.uid] = run
        failed = []
        for launch, extra in zip(launches, device_vars, strict=True):
            with launch.log_path.open("ab") as log:
                try:
                    run.processes[launch.name] = subprocess.Popen(
                        launch.argv, env={**launch.env, **extra}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
                    )
                except OSError as error:  # the runtime's StartError: the container never ran
                    log.write(f"fake kubelet: cannot start {launch.argv[0]}: {error}\n".encode())
                    failed.append(launch.name)
        self._publish_devices()
        # Running first, then the waiters: a process that exits at once must not have its end overwritten.
        self._write_status(pod, running_status(pod, run.started_at, {n: p.pid for n, p in run.processes.items()}))
        for name in failed:
            self._exited(run, name, 128)
        for name, process in run.processes.items():
            threading.Thread(target=self._wait, args=(run, name, process), daemon=True).start()

    def _allocate(self, identity: tuple[str, str, str], container: Obj) -> dict[str, str]:
        wanted = Counter(
            {r: int(v) for r, v in container_requests(container).items() if r in self.devices.resources and v > 0}
        )
        env: dict[str, str] = {}
        for resource, ids in self.devices.allocate(identity, container["name"], wanted).items():
            env.update(device_env(resource, ids))
        return env

    # -- stopping ----------------------------------------------------------------------------
    def _wait(self, run: PodRun, container: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        self._exited(run, container, 128 - code if code < 0 else code)  # -9 -> 137, as a runtime reports

    def _exited(self, run: PodRun, container: str, code: int) -> None:
        with self._lock:
            run.exit_codes[container] = code
            run.done = len(run.exit_codes) == run.containers
        if not run.done:
            return
        self.devices.release(run.uid)
        self._publish_devices()
        with contextlib.suppress(ApiError):
            pod = self._store.get(self._pods, run.namespace, run.name)
            if pod["metadata"]["uid"] == run.uid:
                self._write_status(pod, terminated_status(pod, run.started_at, run.exit_codes))

    def _stop(self, run: PodRun, grace: int) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; a later, shorter grace (a second delete) cuts it short."""
        with self._lock:
            if run.done or (run.grace is not None and run.grace <= grace):
                return
            first, run.grace = run.grace is None, grace
        for process in run.processes.values():
            with contextlib.suppress(ProcessLookupError):
                if grace == 0:
                    process.kill()
                elif first:
                    process.send_signal(signal.SIGTERM)
        if grace > 0:
            threading.Thread(target=self._kill_after, args=(run, grace), daemon=True).start()

    @staticmethod
    def _kill_after(run: PodRun, grace: int) -> None:
        for process in run.processes.values():
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()

    def _finish_deletion(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiError):
            options = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
            self._store.delete(self._pods, meta["namespace"], meta["name"], options)
        with self._lock:
            self._runs.pop(meta["uid"], None)
        # The pod's directory (its logs) stays, for the test to read, until the test's tmp dir goes.

    def shutdown(self) -> None:
        """Kill every process (the test is over) and wait for them."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            for process in run.processes.values():
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=10)

    # -- writing -----------------------------------------------------------------------------
    def _publish_devices(self) -> None:
        if self.pod_resources is not None:
            self.pod_resources.set_allocations(self.devices.pod_resources())

    def _write_status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        body = {"metadata": {"uid": meta["uid"]}, "status": status}
        with contextlib.suppress(ApiError):  # gone or replaced: the next pass sees it
            self._store.patch(self._pods, meta["namespace"], meta["name"], patches.MERGE, body, "status")
