"""Prometheus holds every metric the dashboards and alerts are built on."""

import time
from typing import Any

import pytest
import yaml

from checks.grafana import substitute
from deploy.grafana.generate import without_zero_fallback
from services import registry
from stack.backends import Backends
from stack.native import REPO
from stack.processes import wait_until
from stack.verify import dashboard_queries
from tests.e2e.conftest import Traffic
from traces.trace_id import full_trace_id

SERVICES = registry.names()

# (series selector, why it must exist). A new metric is one line.
SERIES = [
    *(f'http_server_request_duration_seconds_bucket{{service_name="{s}"}}' for s in SERVICES),
    'http_client_request_duration_seconds_bucket{service_name="gateway"}',
    'http_client_request_duration_seconds_bucket{service_name="chat"}',
    'chat_requests_total{service_name="gateway", chat_outcome="ok"}',
    'chat_replies_total{service_name="chat", cache_hit="true"}',
    'chat_replies_total{service_name="chat", cache_hit="false"}',
    'chat_reply_duration_seconds_bucket{service_name="chat"}',
    'cache_lookups_total{service_name="cache", cache_result="hit"}',
    'cache_lookups_total{service_name="cache", cache_result="miss"}',
    *(f'traces_span_metrics_calls_total{{service_name="{s}"}}' for s in SERVICES),
    *(f'traces_span_metrics_duration_seconds_bucket{{service_name="{s}"}}' for s in SERVICES),
    'traces_span_metrics_calls_total{service_name="cache", span_kind="SPAN_KIND_CLIENT"}',
    "otelcol_receiver_accepted_spans_total",
    "otelcol_exporter_sent_spans_total",
    *(f'otel_sdk_exporter_span_exported_total{{service_name="{s}"}}' for s in SERVICES),
]
# The service graph names a Redis by its client spans' db.system.name: both are "redis".
SERVICE_GRAPH_EDGES = sorted(
    {(c, "redis" if s in registry.REDISES else s) for c, s in registry.edges()}
)


def _has_data(backends: Backends, query: str, timeout: float = 60) -> list[dict[str, Any]]:
    return wait_until(
        lambda: backends.promql(query) or None, timeout=timeout, what=f"data for {query}"
    )


@pytest.mark.parametrize("selector", SERIES)
def test_series_exist(backends: Backends, traffic: Traffic, selector: str) -> None:
    _has_data(backends, selector)


@pytest.mark.parametrize(("client", "server"), SERVICE_GRAPH_EDGES)
def test_service_graph_has_the_edge(
    backends: Backends, traffic: Traffic, client: str, server: str
) -> None:
    _has_data(
        backends, f'traces_service_graph_request_total{{client="{client}", server="{server}"}}'
    )


def test_exemplars_lead_to_traces_in_jaeger(backends: Backends, traffic: Traffic) -> None:
    def exemplar_trace_ids() -> set[str] | None:
        now = time.time()
        body = backends.get_json(
            backends.ports.prometheus,
            "/api/v1/query_exemplars",
            query='http_server_request_duration_seconds_bucket{service_name="gateway"}',
            start=str(now - 3600),
            end=str(now + 60),
        )
        ids = {
            full_trace_id(exemplar["labels"]["trace_id"])
            for series in body["data"]
            for exemplar in series["exemplars"]
            if "trace_id" in exemplar["labels"]
        }
        return ids or None

    trace_ids = wait_until(exemplar_trace_ids, timeout=60, what="exemplars with trace ids")
    for trace_id in sorted(trace_ids)[:5]:

        def stored(t: str = trace_id) -> object | None:
            return backends.trace(t) or None

        wait_until(stored, timeout=30, what=f"exemplar trace {trace_id} in Jaeger")


# --- Every query a dashboard panel runs returns data -------------------------------------

# Failure counters that a healthy Collector never creates and that this run cannot make
# fail without breaking the pipeline the other tests use (an exporter whose backend
# rejects or stalls). Their names are those of alert OtelCollectorDroppingData, which
# its promtool test fires. Every other failure counter gets real failures (`failures`).
NO_REAL_FAILURES = ("otelcol_exporter_send_failed_", "otelcol_exporter_enqueue_failed_")


def _panel_queries() -> list[tuple[str, str]]:
    """Every PromQL query of every panel (as `make verify-stack` runs them: Grafana's
    variables as a user first opening the dashboard has them); a query that reads 0
    where a failure counter does not exist yet (gen_dashboards.or_zero) once more
    without that fallback, so the fallback's 0 cannot pass for data of the failures
    themselves."""
    queries = []
    for where, expr in dashboard_queries():
        queries.append((where, expr))
        failures_only = without_zero_fallback(expr)
        if failures_only is not None and not any(
            name in failures_only for name in NO_REAL_FAILURES
        ):
            queries.append((f"{where} (failures only)", failures_only))
    return queries


@pytest.mark.parametrize(("panel", "expr"), _panel_queries(), ids=lambda v: str(v)[:70])
def test_dashboard_panel_shows_data(
    backends: Backends, traffic: Traffic, failures: None, panel: str, expr: str
) -> None:
    _has_data(backends, expr)


def test_every_alert_has_a_promtool_unit_test() -> None:
    """Alert expressions are quiet on a healthy stack; their promtool tests prove
    each one fires (and stays quiet) as meant."""
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules/alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((REPO / "deploy/prometheus/rules/alerts.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    assert alerts and alerts <= tested, alerts - tested


def test_alert_rules_are_loaded_and_evaluated(backends: Backends, stack: Any) -> None:
    body = backends.get_json(backends.ports.prometheus, "/api/v1/rules")
    loaded = {r["name"] for g in body["data"]["groups"] for r in g["rules"]}
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules/alerts.yml").read_text())
    assert {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r} <= loaded


def _trace_to_metrics_queries() -> list[tuple[str, str]]:
    """Tempo's "related metrics" of a span, for the gateway's `POST /chat` spans."""
    provisioning = REPO / "deploy/grafana/provisioning/datasources/datasources.yaml"
    # `$$` is a literal `$` in provisioning files.
    datasources = yaml.safe_load(provisioning.read_text().replace("$$", "$"))["datasources"]
    tempo = next(d for d in datasources if d["uid"] == "tempo")
    tags = 'service_name="gateway"'  # what Grafana makes of the span's service.name
    span = {"__span.name": "POST /chat"}
    return [
        (query["name"], substitute(query["query"].replace("$__tags", tags), span))
        for query in tempo["jsonData"]["tracesToMetrics"]["queries"]
    ]


@pytest.mark.parametrize(("name", "expr"), _trace_to_metrics_queries())
def test_trace_to_metrics_links_show_data(
    backends: Backends, traffic: Traffic, name: str, expr: str
) -> None:
    _has_data(backends, expr)
