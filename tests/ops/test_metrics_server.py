"""The health server over real HTTP: /metrics parsed as Prometheus text, probes flipping."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from handler.ops.health_server import HealthServer, parse_address
from handler.ops.metrics import Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Switch:
    """A probe whose answer (or failure) the test sets."""

    def __init__(self, ok: bool, reason: str) -> None:
        self.answer: tuple[bool, str] | Exception = (ok, reason)

    def __call__(self) -> tuple[bool, str]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(version="9.9.9")


@pytest.fixture
def live() -> Switch:
    return Switch(True, "ok")


@pytest.fixture
def ready() -> Switch:
    return Switch(False, "first sync not done")


@pytest.fixture
def base(metrics: Metrics, live: Switch, ready: Switch) -> Iterator[str]:
    server = HealthServer("127.0.0.1:0", metrics, live, ready)
    port = server.start()
    assert port > 0
    yield f"http://127.0.0.1:{port}"
    server.stop()


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def scrape(base: str) -> Samples:
    status, content_type, body = get(base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_reflect_the_calls(base: str, metrics: Metrics) -> None:
    metrics.set_phase_counts({"Running": 2, "Pending": 1})
    metrics.set_phase_counts({"Running": 3})
    metrics.observe_reconcile(0.2)
    metrics.observe_reconcile(0.2)
    metrics.observe_reconcile(7.0)
    metrics.count_error("DefineFailed")
    metrics.count_error("DefineFailed")
    metrics.count_error("DeviceEnvInvalid")
    metrics.set_devices_assigned(4)
    metrics.set_libvirt_connected(True)
    metrics.count_watch_restart("vmi-dir")
    metrics.count_shutdown("guest_poweroff")

    samples = scrape(base)

    assert one(samples, "qat_handler_vmis", phase="Running") == 3
    assert one(samples, "qat_handler_vmis", phase="Pending") == 0  # gone, not stale
    assert one(samples, "qat_handler_reconcile_duration_seconds_count") == 3
    assert one(samples, "qat_handler_reconcile_duration_seconds_sum") == pytest.approx(7.4)
    assert one(samples, "qat_handler_reconcile_duration_seconds_bucket", le="0.25") == 2
    assert one(samples, "qat_handler_reconcile_duration_seconds_bucket", le="5.0") == 2
    assert one(samples, "qat_handler_reconcile_duration_seconds_bucket", le="+Inf") == 3
    assert one(samples, "qat_handler_reconcile_errors_total", reason="DefineFailed") == 2
    assert one(samples, "qat_handler_reconcile_errors_total", reason="DeviceEnvInvalid") == 1
    assert one(samples, "qat_handler_devices_assigned") == 4
    assert one(samples, "qat_handler_libvirt_connected") == 1
    assert one(samples, "qat_handler_watch_restarts_total", source="vmi-dir") == 1
    assert one(samples, "qat_handler_shutdowns_total", outcome="guest_poweroff") == 1
    assert one(samples, "qat_handler_shutdowns_total", outcome="destroyed") == 0
    assert one(samples, "qat_handler_shutdowns_total", outcome="already_off") == 0
    build = [labels for (name, labels) in samples if name == "qat_handler_build_info"]
    assert len(build) == 1
    assert ("version", "9.9.9") in build[0]
    assert one(samples, "qat_handler_build_info", **dict(build[0])) == 1

    metrics.set_libvirt_connected(False)
    assert one(scrape(base), "qat_handler_libvirt_connected") == 0


def test_registries_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.count_error("X")
    assert first.registry.get_sample_value("qat_handler_reconcile_errors_total", {"reason": "X"}) == 1
    assert second.registry.get_sample_value("qat_handler_reconcile_errors_total", {"reason": "X"}) is None


def test_openmetrics_is_negotiated(base: str) -> None:
    status, content_type, body = get(base + "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_probes_flip_between_200_and_503(base: str, live: Switch, ready: Switch) -> None:
    assert get(base + "/healthz")[::2] == (200, "ok\n")
    assert get(base + "/readyz")[::2] == (503, "first sync not done\n")

    ready.answer = (True, "ok")
    live.answer = (False, "the reconcile loop last ran 95s ago (limit 60s)")
    assert get(base + "/readyz")[::2] == (200, "ok\n")
    assert get(base + "/healthz")[::2] == (503, "the reconcile loop last ran 95s ago (limit 60s)\n")


def test_a_probe_that_raises_is_a_503_not_a_dead_server(base: str, live: Switch) -> None:
    live.answer = RuntimeError("lock poisoned")
    status, _, body = get(base + "/healthz")
    assert status == 503
    assert "lock poisoned" in body
    live.answer = (True, "ok")
    assert get(base + "/healthz")[0] == 200


def test_unknown_paths_are_404(base: str) -> None:
    assert get(base + "/")[0] == 404
    assert get(base + "/metricsx")[0] == 404
    assert get(base + "/healthz?verbose=1")[0] == 200


def test_ipv6_loopback(metrics: Metrics) -> None:
    server = HealthServer("[::1]:0", metrics, lambda: (True, "ok"), lambda: (True, "ok"))
    port = server.start()
    try:
        assert get(f"http://[::1]:{port}/readyz")[0] == 200
    finally:
        server.stop()


def test_stop_releases_the_port(metrics: Metrics) -> None:
    server = HealthServer("127.0.0.1:0", metrics, lambda: (True, "ok"), lambda: (True, "ok"))
    port = server.start()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9471", ("127.0.0.1", 9471)),
        ("[::1]:9471", ("::1", 9471)),
        (":9471", ("", 9471)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9471", "host:", "host:http", "host:70000", ""])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)
