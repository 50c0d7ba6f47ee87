#!/usr/bin/env python3
"""Generate the Grafana dashboards of the demo as JSON (deploy/grafana/dashboards/).

    python3 scripts/gen_dashboards.py           # (re)write the JSON files
    python3 scripts/gen_dashboards.py --check   # exit 1 if a committed file is stale

The JSON is committed too, so Grafana needs nothing but the files; this script is the
place to edit them. Queries are written against the metric names of Prometheus 3's OTLP
translation (deploy/prometheus/prometheus.yml): every pushed series carries
`service_name`; span metrics and the service graph come from the Collector's connectors.

Data source uids (prometheus, tempo, loki) are the ones provisioned in
deploy/grafana/provisioning/datasources/datasources.yaml; scripts/check_grafana.py
checks that both agree and that every PromQL expression parses.
"""

# ruff: noqa: E501 - PromQL/LogQL queries and panel descriptions read best on one line

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
# Last schema version of the v1 dashboard JSON model (Grafana 13 still reads v1 JSON).
SCHEMA_VERSION = 42

PROM = {"type": "prometheus", "uid": "prometheus"}
TEMPO = {"type": "tempo", "uid": "tempo"}
LOKI = {"type": "loki", "uid": "loki"}

Json = dict[str, Any]

# --- building blocks ----------------------------------------------------------


def prom(expr: str, legend: str, *, exemplar: bool = False) -> Json:
    """A PromQL target; exemplars link latency samples to their traces in Tempo."""
    return {
        "datasource": PROM,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "instant": False,
        "exemplar": exemplar,
    }


def loki(expr: str, legend: str = "") -> Json:
    target: Json = {"datasource": LOKI, "expr": expr, "queryType": "range"}
    if legend:
        target["legendFormat"] = legend
    return target


def quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    """histogram_quantile over a classic histogram (`<metric>_bucket`), grouped by `by`."""
    matchers = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{matchers}[$__rate_interval])))"


class Board:
    """Panels of one dashboard, placed left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = self.y = self.row_height = 0

    def _place(self, panel: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        for i, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + i)
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self._place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0

    def timeseries(
        self,
        title: str,
        targets: list[Json],
        *,
        w: int,
        h: int,
        unit: str = "short",
        description: str = "",
        stack: bool = False,
        bars: bool = False,
    ) -> None:
        custom: Json = {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if bars else 10 if stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        self._place(
            {
                "type": "timeseries",
                "title": title,
                "description": description,
                "datasource": targets[0]["datasource"],
                "targets": targets,
                "fieldConfig": {
                    "defaults": {"unit": unit, "min": 0, "custom": custom},
                    "overrides": [],
                },
                "options": {
                    "legend": {
                        "displayMode": "table",
                        "placement": "bottom",
                        "calcs": ["mean", "max"],
                    },
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
            },
            w,
            h,
        )

    def stat(
        self, title: str, target: Json, *, w: int, h: int, unit: str, description: str = ""
    ) -> None:
        self._place(
            {
                "type": "stat",
                "title": title,
                "description": description,
                "datasource": target["datasource"],
                "targets": [target],
                "fieldConfig": {"defaults": {"unit": unit, "decimals": 1}, "overrides": []},
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value",
                    "graphMode": "area",
                    "textMode": "auto",
                },
            },
            w,
            h,
        )

    def logs(self, title: str, target: Json, *, w: int, h: int) -> None:
        self._place(
            {
                "type": "logs",
                "title": title,
                "datasource": target["datasource"],
                "targets": [target],
                "options": {
                    "showTime": True,
                    "showLabels": False,
                    "showCommonLabels": False,
                    "wrapLogMessage": True,
                    "prettifyLogMessage": False,
                    "enableLogDetails": True,
                    "dedupStrategy": "none",
                    "sortOrder": "Descending",
                },
            },
            w,
            h,
        )

    def text(self, markdown: str, *, w: int, h: int) -> None:
        self._place(
            {"type": "text", "title": "", "options": {"mode": "markdown", "content": markdown}},
            w,
            h,
        )

    def node_graph(self, title: str, *, w: int, h: int, description: str = "") -> None:
        """The service graph, as Tempo's data source builds it from the service-graph metrics."""
        self._place(
            {
                "type": "nodeGraph",
                "title": title,
                "description": description,
                "datasource": TEMPO,
                "targets": [{"datasource": TEMPO, "queryType": "serviceMap"}],
                "options": {},
            },
            w,
            h,
        )


def multi_variable(
    name: str, label: str, datasource: Json, query: Any, definition: str, all_value: str
) -> Json:
    """A multi-value variable from label values; "All" matches with `all_value`."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": datasource,
        "query": query,
        "definition": definition,
        "refresh": 2,  # on time range change
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def textbox(name: str, label: str, default: str) -> Json:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": default,
        "current": {"text": default, "value": default},
    }


def dashboard(uid: str, title: str, description: str, board: Board, variables: list[Json]) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["otel-chat-demo"],
        "editable": False,
        "graphTooltip": 1,  # shared crosshair across panels
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["otel-chat-demo"],
                "asDropdown": True,
                "title": "Dashboards",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "panels": board.panels,
    }


# --- the dashboards -----------------------------------------------------------

SERVER = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
SEL = 'service_name=~"$service"'
ROUTE_BY = "service_name, http_request_method, http_route"
ROUTE_LEGEND = "{{service_name}} {{http_request_method}} {{http_route}}"
RATE = "[$__rate_interval]"


def or_zero(failures: str, total: str) -> str:
    """`failures`, or 0 for every series of `total` that has none yet.

    Failure counters appear only after the first failure: without this a healthy
    stack shows "No data" where it should show 0 (and the end-to-end tests, which
    ask every panel for data, fail).
    """
    return f"({failures}) or ({total}) * 0"


def services_overview() -> Json:
    b = Board()

    b.row("Requests per service (server side)")
    b.timeseries(
        "Request rate",
        [prom(f"sum by (service_name) (rate({SERVER}_count{{{SEL}}}{RATE}))", "{{service_name}}")],
        unit="reqps",
        w=8,
        h=8,
        description="HTTP requests served per second (http.server.request.duration count).",
    )
    b.timeseries(
        "Error ratio (5xx)",
        [
            prom(
                "("
                + or_zero(
                    f'sum by (service_name) (rate({SERVER}_count{{{SEL}, http_response_status_code=~"5.."}}{RATE}))',
                    f"sum by (service_name) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                )
                + f") / sum by (service_name) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                "{{service_name}}",
            )
        ],
        unit="percentunit",
        w=8,
        h=8,
        description="Share of responses with a 5xx status. Alert HighErrorRate fires above 5%.",
    )
    b.timeseries(
        "Latency p50 / p95 / p99",
        [
            prom(
                quantile(q, SERVER, "service_name", SEL),
                f"p{int(q * 100)} {{{{service_name}}}}",
                exemplar=True,
            )
            for q in (0.50, 0.95, 0.99)
        ],
        unit="s",
        w=8,
        h=8,
        description="Server-side request duration. The dots are exemplars: click one to open that request's trace.",
    )

    b.row("Per route")
    b.timeseries(
        "Request rate by route and status",
        [
            prom(
                f"sum by ({ROUTE_BY}, http_response_status_code) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                ROUTE_LEGEND + " {{http_response_status_code}}",
            )
        ],
        unit="reqps",
        stack=True,
        w=12,
        h=9,
    )
    b.timeseries(
        "Error ratio by route (5xx)",
        [
            prom(
                "("
                + or_zero(
                    f'sum by ({ROUTE_BY}) (rate({SERVER}_count{{{SEL}, http_response_status_code=~"5.."}}{RATE}))',
                    f"sum by ({ROUTE_BY}) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                )
                + f") / sum by ({ROUTE_BY}) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                ROUTE_LEGEND,
            )
        ],
        unit="percentunit",
        w=12,
        h=9,
    )
    for q in (0.50, 0.95, 0.99):
        b.timeseries(
            f"Latency p{int(q * 100)} by route",
            [prom(quantile(q, SERVER, ROUTE_BY, SEL), ROUTE_LEGEND, exemplar=True)],
            unit="s",
            w=8,
            h=9,
            description="Click an exemplar dot to open a request of that route in Tempo.",
        )

    b.row("Calls to the next hop (client side)")
    b.timeseries(
        "Outgoing request rate by target and status",
        [
            prom(
                f"sum by (service_name, server_address, http_response_status_code) (rate({CLIENT}_count{{{SEL}}}{RATE}))",
                "{{service_name}} → {{server_address}} {{http_response_status_code}}",
            )
        ],
        unit="reqps",
        w=12,
        h=8,
        description="gateway → chat and chat → cache, as seen by the caller (http.client.request.duration).",
    )
    b.timeseries(
        "Outgoing request latency p95",
        [
            prom(
                quantile(0.95, CLIENT, "service_name, server_address", SEL),
                "{{service_name}} → {{server_address}}",
                exemplar=True,
            )
        ],
        unit="s",
        w=12,
        h=8,
        description="Compared with the callee's own server latency, the difference is network and queueing.",
    )

    b.row("Chat")
    b.timeseries(
        "Chat requests by outcome (gateway)",
        [prom(f"sum by (chat_outcome) (rate(chat_requests_total{RATE}))", "{{chat_outcome}}")],
        unit="reqps",
        stack=True,
        w=12,
        h=8,
    )
    b.timeseries(
        "Replies by cache hit (chat)",
        [prom(f"sum by (cache_hit) (rate(chat_replies_total{RATE}))", "cache_hit={{cache_hit}}")],
        unit="reqps",
        stack=True,
        w=12,
        h=8,
    )

    b.row("Service graph")
    b.node_graph(
        "Service graph (from traces)",
        w=12,
        h=10,
        description="Built from the Collector's service-graph connector; Tempo's Service Graph tab in Explore is the interactive version.",
    )
    b.timeseries(
        "Edges: request rate",
        [
            prom(
                f"sum by (client, server) (rate(traces_service_graph_request_total{RATE}))",
                "{{client}} → {{server}}",
            )
        ],
        unit="reqps",
        w=12,
        h=10,
    )

    query = f"label_values({SERVER}_count, service_name)"
    service = multi_variable(
        "service",
        "Service",
        PROM,
        {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        query,
        ".*",
    )
    return dashboard(
        "otel-chat-services",
        "Services overview",
        "Rate, errors and duration of gateway, chat and cache, per service and per route.",
        b,
        [service],
    )


def cache() -> Json:
    b = Board()
    redis = 'service_name="cache", span_kind="SPAN_KIND_CLIENT"'
    edges = 'client="cache"'

    b.row("Hit ratio")
    b.stat(
        "Hit ratio (cache service)",
        prom(
            f'sum(rate(cache_lookups_total{{cache_result="hit"}}{RATE})) / sum(rate(cache_lookups_total{RATE}))',
            "hit ratio",
        ),
        unit="percentunit",
        w=6,
        h=7,
        description="Share of key lookups in the cache service that found a value.",
    )
    b.stat(
        "Reply hit ratio (chat)",
        prom(
            f'sum(rate(chat_replies_total{{cache_hit="true"}}{RATE})) / sum(rate(chat_replies_total{RATE}))',
            "hit ratio",
        ),
        unit="percentunit",
        w=6,
        h=7,
        description="Share of chat replies served from the cache instead of being composed again.",
    )
    b.timeseries(
        "Lookups by result",
        [prom(f"sum by (cache_result) (rate(cache_lookups_total{RATE}))", "{{cache_result}}")],
        unit="ops",
        stack=True,
        w=12,
        h=7,
    )
    b.timeseries(
        "Reply duration p95 by cache hit (chat)",
        [
            prom(
                quantile(0.95, "chat_reply_duration_seconds", "cache_hit"),
                "cache_hit={{cache_hit}}",
                exemplar=True,
            )
        ],
        unit="s",
        w=24,
        h=8,
        description="What a hit saves: a miss includes the simulated thinking time. Exemplars open the trace.",
    )

    b.row("Redis, as seen by the cache service")
    b.timeseries(
        "Redis latency p50 / p95 / p99",
        [
            prom(
                quantile(q, "traces_span_metrics_duration_seconds", "span_name", redis),
                f"p{int(q * 100)} {{{{span_name}}}}",
                exemplar=True,
            )
            for q in (0.50, 0.95, 0.99)
        ],
        unit="s",
        w=12,
        h=9,
        description="Client spans of the cache service (db.system redis), from the Collector's span_metrics connector.",
    )
    b.timeseries(
        "Redis commands per second and errors",
        [
            prom(
                f"sum by (span_name) (rate(traces_span_metrics_calls_total{{{redis}}}{RATE}))",
                "{{span_name}}",
            ),
            prom(
                or_zero(
                    f'sum by (span_name) (rate(traces_span_metrics_calls_total{{{redis}, status_code="STATUS_CODE_ERROR"}}{RATE}))',
                    f"sum by (span_name) (rate(traces_span_metrics_calls_total{{{redis}}}{RATE}))",
                ),
                "errors {{span_name}}",
            ),
        ],
        unit="ops",
        w=12,
        h=9,
    )
    b.timeseries(
        "Service graph: requests from cache",
        [
            prom(
                f"sum by (client, server) (rate(traces_service_graph_request_total{{{edges}}}{RATE}))",
                "{{client}} → {{server}}",
            )
        ],
        unit="ops",
        w=12,
        h=8,
        description='Edges of the service graph that start at cache; Redis is the database node "redis".',
    )
    b.timeseries(
        "Service graph: cache → server latency p95",
        [
            prom(
                quantile(
                    0.95, "traces_service_graph_request_server_seconds", "client, server", edges
                ),
                "{{client}} → {{server}}",
                exemplar=True,
            )
        ],
        unit="s",
        w=12,
        h=8,
        description="The same edges' duration, as the service-graph connector measures it.",
    )

    return dashboard("otel-chat-cache", "Cache", "Cache effectiveness and Redis latency.", b, [])


def collector() -> Json:
    b = Board()
    signals = (
        ("spans", "spans"),
        ("metric_points", "metric points"),
        ("log_records", "log records"),
    )

    def per_signal(metric: str, by: str, legend: str, *, zero_like: str = "") -> list[Json]:
        """One target per signal: `metric` has a {} where the signal's name goes.
        `zero_like`: a metric of the same components that always exists, for a 0
        while `metric` (a failure counter) has not appeared yet."""

        def expr(s: str) -> str:
            rate = f"sum by ({by}) (rate({metric.format(s)}{RATE}))"
            if zero_like:
                return or_zero(rate, f"sum by ({by}) (rate({zero_like.format(s)}{RATE}))")
            return rate

        return [prom(expr(s), f"{label} {legend}") for s, label in signals]

    b.row("Receivers")
    b.timeseries(
        "Accepted",
        per_signal("otelcol_receiver_accepted_{}_total", "receiver", "{{receiver}}"),
        w=12,
        h=8,
        description="Items per second the receivers pushed into the pipelines.",
    )
    b.timeseries(
        "Refused",
        per_signal("otelcol_receiver_refused_{}_total", "receiver", "{{receiver}}"),
        w=12,
        h=8,
        description="Items per second refused (back-pressure, e.g. memory_limiter). Alert: OtelCollectorRefusingData.",
    )

    b.row("Exporters")
    b.timeseries(
        "Sent",
        per_signal("otelcol_exporter_sent_{}_total", "exporter", "{{exporter}}"),
        w=12,
        h=8,
        description="Items per second delivered to Tempo, Prometheus and Loki.",
    )
    b.timeseries(
        "Dropped: send failed after retries, or queue full",
        per_signal(
            "otelcol_exporter_send_failed_{}_total",
            "exporter",
            "failed {{exporter}}",
            zero_like="otelcol_exporter_sent_{}_total",
        )
        + per_signal(
            "otelcol_exporter_enqueue_failed_{}_total",
            "exporter",
            "queue full {{exporter}}",
            zero_like="otelcol_exporter_sent_{}_total",
        ),
        w=12,
        h=8,
        description="Items per second the Collector accepted but will not deliver. Alert: OtelCollectorDroppingData.",
    )
    b.timeseries(
        "Sending queue size and capacity",
        [
            prom("sum by (exporter) (otelcol_exporter_queue_size)", "size {{exporter}}"),
            prom("sum by (exporter) (otelcol_exporter_queue_capacity)", "capacity {{exporter}}"),
        ],
        w=12,
        h=8,
        description="Batches waiting per exporter. Alert OtelCollectorQueueNearlyFull fires above 80%.",
    )
    b.timeseries(
        "Scrape of the Collector's metrics",
        [prom('up{job="otel-collector"}', "{{instance}}")],
        w=12,
        h=8,
        description="1 when Prometheus can scrape :8888. Alert: OtelCollectorDown.",
    )

    return dashboard(
        "otel-chat-collector",
        "OpenTelemetry Collector",
        "What the Collector receives, refuses, delivers, queues and drops.",
        b,
        [],
    )


def logs() -> Json:
    b = Board()
    # trace_id is structured metadata (not a label): a filter after the stream selector.
    # `0*`: an id copied from Tempo's search lacks its leading zeros (check_stack.py).
    selector = '{service_name=~"$service"} | trace_id=~"0*$trace_id"'

    b.text(
        "Logs of the services, shipped over OTLP. `trace_id` and `span_id` are structured metadata: "
        "expand a line and use **Open trace** next to `trace_id` to jump to Tempo. "
        "Filter by a trace with the *Trace id* box (a regular expression).",
        w=24,
        h=3,
    )
    b.timeseries(
        "Log lines by service and level",
        [
            loki(
                f"sum by (service_name, detected_level) (count_over_time({selector} [$__auto]))",
                "{{service_name}} {{detected_level}}",
            )
        ],
        stack=True,
        bars=True,
        w=24,
        h=7,
    )
    b.logs("Errors and warnings", loki(f'{selector} | detected_level=~"error|warn"'), w=24, h=9)
    b.logs("All lines", loki(f'{selector} |~ "$search"'), w=24, h=14)

    service = multi_variable(
        "service",
        "Service",
        LOKI,
        {
            "type": 1,
            "label": "service_name",
            "stream": "",
            "refId": "LokiVariableQueryEditor-VariableQuery",
        },
        "label_values(service_name)",
        ".+",
    )
    return dashboard(
        "otel-chat-logs",
        "Logs",
        "Log lines of gateway, chat and cache, with links to their traces.",
        b,
        [
            service,
            textbox("trace_id", "Trace id", ".*"),
            textbox("search", "Line contains (regex)", ""),
        ],
    )


DASHBOARDS: dict[str, Callable[[], Json]] = {
    "services-overview.json": services_overview,
    "cache.json": cache,
    "collector.json": collector,
    "logs.json": logs,
}


def main() -> int:
    parser = argparse.ArgumentParser(description="Generate the Grafana dashboards of the demo.")
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args()

    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT_DIR / name
        content = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(str(path))
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(
            "stale dashboards (run python3 scripts/gen_dashboards.py):\n  " + "\n  ".join(stale),
            file=sys.stderr,
        )
        return 1
    if args.check:
        print(f"gen_dashboards: {len(DASHBOARDS)} dashboards up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
