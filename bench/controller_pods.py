"""The controller creating launcher pods for 1,000 new VMIs, beside a bare loop of 1,000 pod creates.

    python bench/controller_pods.py                 # 1,000 VMIs, 3 runs each, medians
    python bench/controller_pods.py --vmis 200 --repeat 5 --workers 4 --json

A benchmark, never a test: nothing here asserts. Both sides talk to the same fake API server
(tests/support/fakekube), run in a child process of its own so that it does not share this
process's interpreter lock, each run on a fresh server holding the same 1,000 VMIs:

* the baseline: one client, a plain ``for`` loop of ``create_namespaced_pod`` with the pods
  already rendered (the floor: one API call per pod, nothing else); and, for a like-for-like
  view, the same loop spread over as many threads as the controller has workers;
* the controller: the real ``Controller``, started and synced as a standby, then told to lead;
  the clock runs from ``lead()`` to the moment its own pod cache holds all 1,000 pods. That
  includes the fresh pod list a new leader makes, rendering every pod from its VMI, and the
  ``Scheduling`` status patch it sends for each VMI once it sees the pod (a second API call
  per VMI that the baseline does not make).

Goal: the controller within 1.5x the bare loop. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handler.controller.controller import Controller, ControllerSettings  # noqa: E402
from handler.core.launcher_pod import LauncherPodSettings, render_launcher_pod  # noqa: E402
from handler.kube.informer import WatchSettings  # noqa: E402
from handler.ops.logs import configure_logging  # noqa: E402

GOAL_RATIO = 1.5
NAMESPACE = "bench"
SERVER = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.support.fakekube import FakeApiServer
server = FakeApiServer(bookmark_interval=1.0, history_limit=100_000)
print(server.start(), flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def fake_apiserver() -> Iterator[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(repo=str(REPO))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # keep-alive connections the clients drop at the end show up there
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        yield child.stdout.readline().strip()
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def api_client(url: str) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = url
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def vmi(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": f"vmi-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "domain": {
                "cpu": {"cores": 1},
                "memory": {"guest": "256Mi"},
                "devices": {"qats": [{"name": "qat1", "deviceName": "qat.intel.com/generic"}]},
            }
        },
    }


def create_vmis(api: Any, count: int) -> list[dict[str, Any]]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    return [
        custom.create_namespaced_custom_object("kubevirt.io", "v1", NAMESPACE, "virtualmachineinstances", vmi(i))
        for i in range(count)
    ]


def baseline(count: int, settings: LauncherPodSettings, threads: int = 1) -> float:
    """The bare loop: ``threads`` plain loops sharing the pre-rendered pods (1: one ``for`` loop)."""
    from kubernetes import client

    with fake_apiserver() as url:
        api = api_client(url)
        pods = [render_launcher_pod(v, settings) for v in create_vmis(api, count)]
        core = client.CoreV1Api(api)

        def create(pod: dict[str, Any]) -> None:
            response = core.create_namespaced_pod(NAMESPACE, pod, _preload_content=False)
            response.data  # noqa: B018  (read it, so the connection goes back to the pool, as in the controller)

        started = time.perf_counter()
        if threads == 1:
            for pod in pods:
                create(pod)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(create, pods))
        return time.perf_counter() - started


def controller_run(count: int, settings: ControllerSettings) -> tuple[float, float]:
    """Seconds from lead() to all pods in the controller's cache, and to all VMIs Scheduling."""
    with fake_apiserver() as url:
        api = api_client(url)
        create_vmis(api, count)
        controller = Controller(api, settings, WatchSettings(watch_seconds=300, inactivity_seconds=60))
        controller.start()
        if not controller.wait_synced(60):
            raise SystemExit("the controller's caches did not fill")
        started = time.perf_counter()
        controller.lead()
        while len(controller.pods.keys()) < count:
            time.sleep(0.002)
        pods_done = time.perf_counter() - started
        while not all((v.get("status") or {}).get("phase") == "Scheduling" for v in controller.vmis.items()):
            time.sleep(0.005)
        scheduling_done = time.perf_counter() - started
        controller.stop()
        return pods_done, scheduling_done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vmis", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging("console", "warning")  # a line per pod would measure the terminal
    pod_settings = LauncherPodSettings("qat-handler:0.1.0")
    settings = ControllerSettings(pod_settings, workers=args.workers)
    loops, threaded, pods, phases = [], [], [], []
    for _ in range(args.repeat):
        loops.append(baseline(args.vmis, pod_settings))
        threaded.append(baseline(args.vmis, pod_settings, args.workers))
        pod_seconds, phase_seconds = controller_run(args.vmis, settings)
        pods.append(pod_seconds)
        phases.append(phase_seconds)
    result = {
        "vmis": args.vmis,
        "workers": args.workers,
        "runs": args.repeat,
        "baseline_loop_seconds": statistics.median(loops),
        "baseline_threaded_seconds": statistics.median(threaded),
        "controller_pods_seconds": statistics.median(pods),
        "controller_scheduling_seconds": statistics.median(phases),
        "all": {"baseline": loops, "threaded": threaded, "controller_pods": pods, "controller_scheduling": phases},
    }
    result["ratio"] = result["controller_pods_seconds"] / result["baseline_loop_seconds"]
    result["ratio_threaded"] = result["controller_pods_seconds"] / result["baseline_threaded_seconds"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ratio = result["ratio"]
    verdict = "met" if ratio <= GOAL_RATIO else "missed"
    print(f"{args.vmis} VMIs, controller with {args.workers} workers, median of {args.repeat} runs")
    print(f"  bare loop of pod creates      {result['baseline_loop_seconds']:.2f} s")
    print(f"  the same in {args.workers} threads        {result['baseline_threaded_seconds']:.2f} s")
    pods = result["controller_pods_seconds"]
    print(f"  controller, all pods created  {pods:.2f} s  ({ratio:.2f}x; goal <= 1.5x: {verdict})")
    print(f"  (against the threaded loop: {result['ratio_threaded']:.2f}x)")
    print(f"  controller, all VMIs Scheduling {result['controller_scheduling_seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
