"""Admission latency of ``qat-handler webhook`` at a steady 200 reviews/s, beside a bare HTTPS
echo measured in the same run (same HTTP and TLS stack, no validation).

    python bench/webhook_latency.py [--rate 200] [--seconds 20] [--rounds 5] [--connections 4] [--json]

Both servers run as their own processes on 127.0.0.1 with a certificate from the project's TLS
code; the webhook takes its gates from a fake API server (QAT on), so every review runs the
whole check (parser, gate, permitted devices) on the example VMI and is admitted. The client
is open-loop: review i is due at start + i/rate, and its latency is counted from when it was
due, so a slow answer also delays the ones queued behind it (no coordinated omission). Reviews
go over a few keep-alive connections, as kube-apiserver sends them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from handler.core.webhook_settings import WebhookTlsSettings  # noqa: E402
from handler.kube.tls_material import make_ca, make_serving_cert  # noqa: E402
from handler.webhook.server import VALIDATE_PATH  # noqa: E402
from tests.support.fakekube import FakeApiServer  # noqa: E402

TLS = WebhookTlsSettings()
HOST = TLS.dns_names()[0]
GOAL_P99_MS = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def review_body() -> bytes:
    vmi = yaml.safe_load((REPO / "deploy" / "examples" / "vmi-qat.yaml").read_text())
    vmi["metadata"]["uid"] = str(uuid.uuid4())
    request = {
        "uid": "UID",
        "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachineInstance"},
        "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachineinstances"},
        "name": vmi["metadata"]["name"],
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
        "object": vmi,
        "dryRun": False,
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def wait_ready(port: int, context: ssl.SSLContext, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = connect(port, context)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                connection.close()
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server on port {port} never became ready")


def connect(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=10)
    raw = socket.create_connection(("127.0.0.1", port), 10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sock = context.wrap_socket(raw, server_hostname=HOST)
    return connection


def drive(port: int, context: ssl.SSLContext, rate: float, seconds: float, connections: int) -> list[float]:
    """Open-loop load: review i is due at start + i/rate; latency is counted from then. Returns the
    latencies; a review that is not admitted stops the run."""
    template = review_body()
    total = int(rate * seconds)
    start = time.monotonic() + 0.5
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        connection = connect(port, context)
        for i in range(index, total, connections):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            body = template.replace(b'"UID"', f'"{uuid.uuid4()}"'.encode())
            connection.request("POST", VALIDATE_PATH, body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            data = answer.read()
            took = time.monotonic() - due
            allowed = answer.status == 200 and json.loads(data)["response"]["allowed"] is True
            if not allowed:
                raise SystemExit(f"a review was not admitted: {data[:200]!r}")
            with lock:
                latencies.append(took)
        connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def review_cpu(count: int = 3000) -> dict[str, Any]:
    """CPU time (not wall time, so other jobs on the machine barely move it) of one review's work in
    the webhook: decode, check, encode. The rest of a review's latency is HTTP, TLS and scheduling."""
    from handler.core.admission import AdmissionPolicy, decide
    from handler.core.admission_review import read_review, review_response

    body, policy = review_body(), AdmissionPolicy(gates=frozenset({"QAT"}))
    costs = []
    for _ in range(count):
        started = time.thread_time()
        uid, request = read_review(json.loads(body))
        json.dumps(review_response(uid, decide(request, policy), request.name))
        costs.append(time.thread_time() - started)
    return summary(costs)


def summary(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "reviews": len(ordered),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99) - 1], 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="per server, over all rounds")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved echo/webhook slices")
    parser.add_argument(
        "--nice", type=int, default=None, help="run client and both servers at this priority (e.g. -10, as root)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.nice is not None:
        # On a machine shared with other jobs the tail is their scheduling, not ours; children inherit it.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    work = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    now = datetime.now(UTC)
    ca = make_ca("bench CA", now, TLS.lifetimes)
    pair = make_serving_cert(ca, TLS.dns_names(), now, TLS.lifetimes)
    (work / "tls.crt").write_bytes(pair.cert_pem)
    (work / "tls.key").write_bytes(pair.key_pem)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    results: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "connections": args.connections,
        "nice": args.nice,
    }
    with FakeApiServer() as api:
        api.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kubevirt-config", "namespace": "kubevirt"},
                "data": {"feature-gates": "QAT"},
            }
        )
        env = {**os.environ, "KUBECONFIG": str(api.write_kubeconfig(work / "kubeconfig"))}
        echo_port, hook_port = free_port(), free_port()
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "bench" / "https_echo.py"),
                    str(work / "tls.crt"),
                    str(work / "tls.key"),
                    str(echo_port),
                ]
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "handler",
                    "webhook",
                    "--listen",
                    f"127.0.0.1:{hook_port}",
                    "--tls-cert-file",
                    str(work / "tls.crt"),
                    "--tls-private-key-file",
                    str(work / "tls.key"),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                env=env,
            ),
        ]
        try:
            wait_ready(echo_port, context, "/")
            wait_ready(hook_port, context, "/readyz")
            drive(hook_port, context, args.rate, 2, args.connections)  # warm-up, not counted
            # Interleaved slices, so that a burst of load from other jobs hits both alike.
            slices: dict[str, list[float]] = {"echo": [], "webhook": []}
            for _ in range(args.rounds):
                for name, port in (("echo", echo_port), ("webhook", hook_port)):
                    slices[name] += drive(port, context, args.rate, args.seconds / args.rounds, args.connections)
            results["echo"], results["webhook"] = summary(slices["echo"]), summary(slices["webhook"])
        finally:
            for child in children:
                child.terminate()
                child.wait(timeout=10)
    results["review_cpu"] = review_cpu()
    results["p99_ratio"] = round(results["webhook"]["p99_ms"] / results["echo"]["p99_ms"], 2)
    results["goal_met"] = results["webhook"]["p99_ms"] <= GOAL_P99_MS
    results["load_average"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name in ("echo", "webhook"):
            r = results[name]
            print(
                f"{name:8} {r['reviews']} reviews at {args.rate}/s: p50 {r['p50_ms']} ms, "
                f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms, all admitted"
            )
        cpu = results["review_cpu"]
        print(f"one review's own work (CPU time): mean {cpu['mean_ms']} ms, p99 {cpu['p99_ms']} ms")
        verdict = "met" if results["goal_met"] else "MISSED"
        print(
            f"webhook p99 / echo p99 = {results['p99_ratio']}; goal p99 <= {GOAL_P99_MS} ms: {verdict}; "
            f"load average {results['load_average']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
