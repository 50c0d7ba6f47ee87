"""``make load`` for real: a short headless Locust run against a native stack of its own.

Its own stack, because the load generator's spans are in the gateway's traces and
its SDK is not the services': the span accounting of test_nothing_lost would see
them as extra.
"""

import csv
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from experiments.load import SERVICE_NAME, native_command
from stack.backends import Backends
from stack.native import REPO, NativeStack, Ports, native_stack
from stack.processes import wait_until
from traces.otlp_json import CLIENT, SERVER, StoredSpan, flatten

# Short and light: one user per load-test key, quick thinking.
RUN = {
    "LOCUST_USERS": "4",
    "LOCUST_SPAWN_RATE": "4",
    "LOCUST_RUN_TIME": "15s",
    "LOCUST_THINK_MIN": "0.2",
    "LOCUST_THINK_MAX": "0.5",
}
ENDPOINTS = {("POST", "/chat"), ("GET", "/chat/{session_id}/history")}


@dataclass(frozen=True)
class LoadRun:
    stack: NativeStack
    result: subprocess.CompletedProcess[str]
    stats: list[dict[str, str]]


@pytest.fixture(scope="module")
def load_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadRun]:
    run_dir: Path = tmp_path_factory.mktemp("load-stack")
    with native_stack(run_dir, Ports.free()) as stack:
        command, env = native_command(stack.ports, {}, reports=run_dir / "reports")
        result = subprocess.run(
            command,
            env={**_environ(), **env, **RUN},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        with (run_dir / "reports/load_stats.csv").open() as stats_file:
            stats = list(csv.DictReader(stats_file))
        yield LoadRun(stack, result, stats)


def _environ() -> dict[str, str]:
    """This process's environment without settings a developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "OTEL_"))}


def test_a_short_run_finishes_and_passes_its_slo_check(load_run: LoadRun) -> None:
    output = load_run.result.stdout + load_run.result.stderr
    assert load_run.result.returncode == 0, output[-4000:]
    assert "SLO check passed" in output
    # The final per-endpoint table: a line per endpoint with its percentiles.
    assert "POST /chat " in output and "GET /chat/{session_id}/history" in output


def test_every_endpoint_has_requests_and_no_unexpected_failure(load_run: LoadRun) -> None:
    rows = {(row["Type"], row["Name"]): row for row in load_run.stats}
    assert set(rows) >= ENDPOINTS, rows.keys()
    for key, row in rows.items():
        assert int(row["Failure Count"]) == 0, (key, row)
    for key in ENDPOINTS:
        assert int(rows[key]["Request Count"]) > 0, key
        assert float(rows[key]["95%"]) > 0, key


def _loadgen_traces(backends: Backends) -> list[list[StoredSpan]]:
    body: dict[str, Any] = backends.get_json(
        backends.ports.jaeger_query,
        "/api/v3/traces",
        **{
            "query.service_name": SERVICE_NAME,
            "query.start_time_min": "2000-01-01T00:00:00Z",
            "query.start_time_max": "2100-01-01T00:00:00Z",
            "query.num_traces": "1000",
        },
    )
    resource_spans = body["result"]["resourceSpans"]
    trace_of = {
        span["spanId"]: span["traceId"]
        for block in resource_spans
        for scope in block.get("scopeSpans", [])
        for span in scope.get("spans", [])
    }
    by_trace: dict[str, list[StoredSpan]] = {}
    for span in flatten(resource_spans):
        by_trace.setdefault(trace_of[span.span_id], []).append(span)
    return list(by_trace.values())


def test_traces_start_at_the_load_generator(load_run: LoadRun) -> None:
    """Each request is a root client span of `loadgen`, the parent of a gateway server span."""
    backends = Backends(load_run.stack.ports)
    sent = sum(int(row["Request Count"]) for row in load_run.stats if row["Name"] != "Aggregated")

    def parented() -> list[tuple[StoredSpan, StoredSpan]] | None:
        pairs = []
        for spans in _loadgen_traces(backends):
            roots = [s for s in spans if not s.parent_span_id]
            gateway = [s for s in spans if s.service == "gateway" and s.kind == SERVER]
            if len(roots) == 1 and gateway:
                pairs.append((roots[0], gateway[0]))
        # Every request the run counted (the last few may be cut off by its end).
        return pairs if len(pairs) >= sent * 0.9 else None

    pairs = wait_until(parented, timeout=60, what="the load generator's traces in Jaeger")
    for root, gateway in pairs:
        assert (root.service, root.kind) == (SERVICE_NAME, CLIENT)
        assert gateway.parent_span_id == root.span_id


def test_the_service_graph_has_the_load_generator_edge(load_run: LoadRun) -> None:
    backends = Backends(load_run.stack.ports)
    query = 'sum(traces_service_graph_request_total{client="loadgen", server="gateway"})'
    edges = wait_until(
        lambda: backends.scalar(query) or None, timeout=60, what="loadgen -> gateway edge"
    )
    assert edges > 0
