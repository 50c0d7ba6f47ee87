"""Every span the services exported reached the Collector and was stored in Jaeger."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.native import NativeStack
from devstack.processes import wait_until
from tests.e2e.conftest import Backends, Traffic


def _scalar(backends: Backends, query: str) -> float:
    result = backends.promql(query)
    return float(result[0]["value"][1]) if result else 0.0


def _collector_counter(backends: Backends, name: str, **labels: str) -> float:
    """A counter read straight from the Collector's own /metrics (no scrape delay)."""
    text = backends.get_text(backends.ports.collector_metrics, "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _stored_spans(backends: Backends) -> int:
    """All spans in Jaeger: every test trace starts at the gateway."""
    now = datetime.now(UTC)
    body: dict[str, Any] = backends.get_json(
        backends.ports.jaeger_query,
        "/api/v3/traces",
        **{
            "query.service_name": "gateway",
            "query.start_time_min": (now - timedelta(hours=1)).isoformat(),
            "query.start_time_max": (now + timedelta(minutes=1)).isoformat(),
            "query.num_traces": "1000",
        },
    )
    return sum(
        len(scope.get("spans", []))
        for block in body["result"]["resourceSpans"]
        for scope in block.get("scopeSpans", [])
    )


def test_span_counts_agree_from_sdk_to_collector_to_jaeger(
    backends: Backends, traffic: Traffic, stack: NativeStack
) -> None:
    def counts() -> dict[str, float]:
        return {
            "exported by the SDKs": _scalar(
                backends, 'sum(otel_sdk_exporter_span_exported_total{error_type=""})'
            ),
            "accepted by the Collector": _collector_counter(
                backends, "otelcol_receiver_accepted_spans_total"
            ),
            "sent to Jaeger": _collector_counter(
                backends, "otelcol_exporter_sent_spans_total", exporter="otlp_grpc/traces"
            ),
            "stored in Jaeger": _stored_spans(backends),
        }

    last: dict[str, float] = {}

    def agree() -> dict[str, float] | None:
        nonlocal last
        last = counts()
        values = set(last.values())
        return last if len(values) == 1 and values != {0.0} else None

    try:
        wait_until(agree, timeout=90, what="span counts to agree", interval=1)
    except TimeoutError as exc:
        raise AssertionError(f"span counts differ: {json.dumps(last)}") from exc
    # At least the spans of the test's own requests (11+ per miss, 9+ per hit).
    assert last["stored in Jaeger"] >= 9 * len(traffic.trace_ids)
    # And nothing was dropped before export (a full queue counts here).
    assert backends.promql('otel_sdk_processor_span_processed_total{error_type!=""}') == []
