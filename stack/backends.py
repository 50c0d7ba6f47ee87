"""Queries against the native stack's stores (Jaeger, Prometheus, VictoriaLogs) and
the Collector: for ``make bench`` and the end-to-end tests."""

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stack.native import Ports
from traces.trace_id import full_trace_id


@dataclass(frozen=True)
class Backends:
    ports: Ports

    def get_json(self, port: int, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{port}{path}{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def get_text(self, port: int, path: str, **params: str) -> str:
        url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            text: str = response.read().decode()
            return text

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """A trace from Jaeger as OTLP JSON resourceSpans ([] while unknown)."""
        path = f"/api/v3/traces/{full_trace_id(trace_id)}"
        try:
            body = self.get_json(self.ports.jaeger_query, path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        spans: list[dict[str, Any]] = body["result"]["resourceSpans"]
        return spans

    def promql(self, query: str) -> list[dict[str, Any]]:
        body = self.get_json(self.ports.prometheus, "/api/v1/query", query=query)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def logs(self, logsql: str, limit: int = 10_000) -> list[dict[str, Any]]:
        text = self.get_text(
            self.ports.victoria_logs, "/select/logsql/query", query=logsql, limit=str(limit)
        )
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def trace_logs(self, trace_id: str) -> list[dict[str, Any]]:
        """The log records of one trace; the store matches all 32 hex digits only."""
        return self.logs(f'trace_id:"{full_trace_id(trace_id)}"')

    def scalar(self, query: str) -> float:
        """The value of a PromQL query with one result (0 without any)."""
        result = self.promql(query)
        return float(result[0]["value"][1]) if result else 0.0

    def collector_counter(self, name: str, **labels: str) -> float:
        """A counter read straight from the Collector's own /metrics (no scrape delay)."""
        return self.counter(self.ports.collector_metrics, name, **labels)

    def counter(self, port: int, name: str, **labels: str) -> float:
        """The sum of a counter's series whose labels include ``labels``, read
        straight from the /metrics of the process on ``port`` (no scrape delay)."""
        text = self.get_text(port, "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def traces_of(self, service: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every trace in Jaeger that ``service`` took part in (since ``since``, or in
        the last hour), as OTLP JSON resourceSpans."""
        now = datetime.now(UTC)
        try:
            body: dict[str, Any] = self.get_json(
                self.ports.jaeger_query,
                "/api/v3/traces",
                **{
                    "query.service_name": service,
                    "query.start_time_min": (since or now - timedelta(hours=1)).isoformat(),
                    "query.start_time_max": (now + timedelta(minutes=1)).isoformat(),
                    "query.num_traces": "10000",
                },
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # no such trace (yet)
                return []
            raise
        blocks: list[dict[str, Any]] = body["result"]["resourceSpans"]
        return blocks

    def stored_spans(self, service: str = "gateway", *, since: datetime | None = None) -> int:
        """Spans in Jaeger of every trace that ``service`` took part in (since
        ``since``, or in the last hour)."""
        return len(self.stored_span_ids(service, since=since))

    def stored_span_ids(self, service: str, *, since: datetime | None = None) -> set[str]:
        """Trace and span ids (``trace/span``) of the spans in Jaeger of every trace
        that ``service`` took part in (since ``since``, or in the last hour)."""
        return {
            f"{span['traceId']}/{span['spanId']}"
            for block in self.traces_of(service, since=since)
            for scope in block.get("scopeSpans", [])
            for span in scope.get("spans", [])
        }

    def span_counts(self) -> dict[str, float]:
        """Spans as counted at each stage, from the SDKs' own metrics to Jaeger."""
        return {
            # Every ended span enters the batch processor; one dropped for a full
            # queue is counted here too (with error_type), but never exported.
            "ended in the services": self.scalar("sum(otel_sdk_processor_span_processed_total)"),
            "exported by the SDKs": self.scalar(
                'sum(otel_sdk_exporter_span_exported_total{error_type=""})'
            ),
            "accepted by the Collector": self.collector_counter(
                "otelcol_receiver_accepted_spans_total"
            ),
            "sent to Jaeger": self.collector_counter(
                "otelcol_exporter_sent_spans_total", exporter="otlp_grpc/traces"
            ),
            "stored in Jaeger": self.stored_spans(),
        }
