"""Replicas on the native stack (``CHAT_REPLICAS=3 CACHE_REPLICAS=2 make dev``), on a
stack of its own: traffic through the one gateway reaches every replica, and the
telemetry tells them apart, by ``service.instance.id``, in Prometheus (the
dashboard's "Requests per instance" panel) and in the trace store (Jaeger).
Then faults and stops, which name a service, reach every replica of it.
"""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from checks.grafana import substitute, walk_panels
from deploy.grafana.generate import REQUESTS_PER_INSTANCE
from services import registry
from services.gateway.settings import DEMO_API_KEY
from stack import faults
from stack.backends import Backends
from stack.native import DEMO_ADMIN_KEY, REPO, NativeStack, Ports, native_stack
from stack.processes import http_ok, wait_until
from traces.otlp_json import SERVER, flatten

REPLICAS = {"chat": 3, "cache": 2}
REQUESTS = 24
VARIABLES = {"service": ".*"}  # the dashboard as first opened: every service


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    run_dir: Path = tmp_path_factory.mktemp("replicas-stack")
    ports = Ports.free().with_replicas(REPLICAS, free=True)
    quick = {  # telemetry within the test's patience; a quick assistant
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "CHAT_THINKING_BASE_MS": "5",
    }
    with native_stack(run_dir, ports, service_env=quick) as stack:
        yield stack


@pytest.fixture(scope="module")
def trace_ids(scaled: NativeStack) -> list[str]:
    gateway = f"http://127.0.0.1:{scaled.ports.entry}"
    with httpx.Client(base_url=gateway, headers={"X-API-Key": DEMO_API_KEY}, timeout=10) as client:
        responses = [
            client.post("/chat", json={"message": f"replicas {uuid.uuid4().hex[:8]}"})
            for _ in range(REQUESTS)
        ]
    assert [r.status_code for r in responses] == [200] * REQUESTS
    return [r.json()["trace_id"] for r in responses]


def test_each_replica_is_a_process_of_its_own_with_its_own_readiness(
    scaled: NativeStack,
) -> None:
    expected = {"chat-1", "chat-2", "chat-3", "cache-1", "cache-2", registry.ENTRY.name}
    assert expected <= {process.name for process in scaled.running}
    for service, count in REPLICAS.items():
        assert len(scaled.ports.of(service)) == count
        for port in scaled.ports.of(service):
            assert http_ok(f"http://127.0.0.1:{port}/readyz")()


def _panel_query() -> str:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/services-overview.json").read_text())
    (panel,) = [p for p in walk_panels(dashboard["panels"]) if p["title"] == REQUESTS_PER_INSTANCE]
    (target,) = panel["targets"]
    return substitute(target["expr"], VARIABLES)


def test_prometheus_has_a_series_per_replica(scaled: NativeStack, trace_ids: list[str]) -> None:
    """The dashboard's own query has a series per process, and each process counted
    requests of its own. (Not "each rate above 0": a replica whose first export
    came after its last request of this short burst has one value only, a rate of 0.)"""
    backends = Backends(scaled.ports)
    query = _panel_query()
    served = (
        "sum by (service_name, service_instance_id) (http_server_request_duration_seconds_count)"
    )

    def instances(expr: str, *, counted: bool) -> dict[str, set[str]] | None:
        found: dict[str, set[str]] = {}
        for series in backends.promql(expr):
            if not counted or float(series["value"][1]) > 0:
                labels = series["metric"]
                found.setdefault(labels["service_name"], set()).add(labels["service_instance_id"])
        counts = {service: len(found.get(service, ())) for service in REPLICAS}
        return found if counts == REPLICAS else None

    def both() -> dict[str, set[str]] | None:
        panel, counters = instances(query, counted=False), instances(served, counted=True)
        return panel if panel is not None and panel == counters else None

    found = wait_until(both, timeout=60, what=f"a series per replica from {query}")
    assert len(found[registry.ENTRY.name]) == 1  # the gateway stays one process


def test_jaeger_holds_spans_of_every_replica(scaled: NativeStack, trace_ids: list[str]) -> None:
    backends = Backends(scaled.ports)

    def servers() -> dict[str, dict[str, int]] | None:
        spans = [span for trace_id in trace_ids for span in flatten(backends.trace(trace_id))]
        by_instance: dict[str, dict[str, int]] = {}
        for span in spans:
            if span.kind == SERVER and span.service in REPLICAS:
                instance = span.resource["service.instance.id"]
                counts = by_instance.setdefault(span.service, {})
                counts[instance] = counts.get(instance, 0) + 1
        chats = sum(by_instance.get("chat", {}).values())
        every = all(len(by_instance.get(s, {})) == n for s, n in REPLICAS.items())
        return by_instance if every and chats == REQUESTS else None

    found = wait_until(servers, timeout=60, what="server spans of every replica in Jaeger")
    # One gateway taking three chats in turn: a third of the requests each.
    assert sorted(found["chat"].values()) == [REQUESTS // 3] * 3, found


def test_faults_and_stops_reach_every_replica(scaled: NativeStack, trace_ids: list[str]) -> None:
    target = faults.NativeTarget(scaled)

    def plans(service: str) -> list[object]:
        ports = scaled.ports.admin_of(service)
        urls = [f"http://127.0.0.1:{port}/admin/faults" for port in ports]
        headers = {"X-Admin-Key": DEMO_ADMIN_KEY}
        return [httpx.get(url, headers=headers).json() for url in urls]

    faults.apply(target, faults.SCENARIOS["chat-errors"])
    failing = {"self": {"latency_ms": 0, "error_rate": 0.5, "status": 500}}
    assert plans("chat") == [failing] * REPLICAS["chat"]
    faults.clear(target)
    assert plans("chat") == [{}] * REPLICAS["chat"]

    # "cache" names both of its processes, as a drill or `make fault` says it.
    scaled.stop_component("cache")
    assert not [p for p in scaled.running if p.name.startswith("cache")]
    scaled.restart_component("cache")
    assert sorted(p.name for p in scaled.running if p.name.startswith("cache")) == [
        "cache-1",
        "cache-2",
    ]
    assert plans("cache") == [{}] * REPLICAS["cache"]  # both answer again
