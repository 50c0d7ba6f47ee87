#!/usr/bin/env python3
"""Generate the Grafana dashboards of the demo as JSON (deploy/grafana/dashboards/).

    python3 scripts/gen_dashboards.py           # (re)write the JSON files
    python3 scripts/gen_dashboards.py --check   # exit 1 if a committed file is stale

The JSON is committed too, so Grafana needs nothing but the files; this script is the
place to edit them. Panels are described by small helpers below; queries are written
against the metric names of Prometheus 3's OTLP translation (see
deploy/prometheus/prometheus.yml): every pushed series carries `service_name`.

Data source uids (prometheus, tempo, loki) are the ones provisioned in
deploy/grafana/provisioning/datasources/datasources.yaml; scripts/check_grafana.py
checks both agree and that every PromQL expression parses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
# Last schema version of the v1 dashboard JSON model; Grafana 13 migrates nothing.
SCHEMA_VERSION = 42

PROM = {"type": "prometheus", "uid": "prometheus"}
TEMPO = {"type": "tempo", "uid": "tempo"}
LOKI = {"type": "loki", "uid": "loki"}

Json = dict[str, Any]

# --- building blocks ----------------------------------------------------------


class Layout:
    """Place panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, panel: Json, w: int, h: int) -> Json:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        return panel

    def row(self, title: str) -> Json:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = {"type": "row", "title": title, "collapsed": False, "panels": []}
        self.place(panel, 24, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0
        return panel


def prom(expr: str, legend: str, *, ref: str = "A", exemplar: bool = False) -> Json:
    """A PromQL target; exemplars link latency samples to their traces in Tempo."""
    return {
        "datasource": PROM,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "instant": False,
        "exemplar": exemplar,
    }


def refs(targets: list[Json]) -> list[Json]:
    for i, target in enumerate(targets):
        target["refId"] = chr(ord("A") + i)
    return targets


def timeseries(
    title: str,
    targets: list[Json],
    *,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    min_zero: bool = True,
) -> Json:
    custom: Json = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10 if stack else 0,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    defaults: Json = {"unit": unit, "custom": custom}
    if min_zero:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": refs(targets),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, target: Json, *, unit: str, description: str = "") -> Json:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": target["datasource"],
        "targets": refs([target]),
        "fieldConfig": {"defaults": {"unit": unit, "decimals": 1}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
    }


def text(content: str) -> Json:
    return {"type": "text", "title": "", "options": {"mode": "markdown", "content": content}}


def prom_variable(name: str, label: str, query: str) -> Json:
    """A multi-value variable from label values (the "All" option matches any value)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": PROM,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(uid: str, title: str, description: str, panels: list[Json], variables: list[Json]) -> Json:
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
        "panels": panels,
    }


# --- the dashboards -----------------------------------------------------------

SERVER = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
SEL = 'service_name=~"$service"'


def quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    matchers = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{matchers}[$__rate_interval])))"


def services_overview() -> Json:
    lay = Layout()
    panels: list[Json] = []

    panels.append(lay.row("Requests per service (server side)"))
    panels.append(lay.place(timeseries(
        "Request rate",
        [prom(f"sum by (service_name) (rate({SERVER}_count{{{SEL}}}[$__rate_interval]))", "{{service_name}}")],
        unit="reqps",
        description="HTTP requests served per second (http.server.request.duration count).",
    ), 8, 8))
    panels.append(lay.place(timeseries(
        "Error ratio (5xx)",
        [prom(
            f'sum by (service_name) (rate({SERVER}_count{{{SEL}, http_response_status_code=~"5.."}}[$__rate_interval]))'
            f" / sum by (service_name) (rate({SERVER}_count{{{SEL}}}[$__rate_interval]))",
            "{{service_name}}",
        )],
        unit="percentunit",
        description="Share of responses with a 5xx status. Alert HighErrorRate fires above 5%.",
    ), 8, 8))
    panels.append(lay.place(timeseries(
        "Latency p50 / p95 / p99",
        [
            prom(quantile(0.50, SERVER, "service_name", SEL), "p50 {{service_name}}", exemplar=True),
            prom(quantile(0.95, SERVER, "service_name", SEL), "p95 {{service_name}}", exemplar=True),
            prom(quantile(0.99, SERVER, "service_name", SEL), "p99 {{service_name}}", exemplar=True),
        ],
        unit="s",
        description="Server-side request duration. The dots are exemplars: click one to open that request's trace.",
    ), 8, 8))

    panels.append(lay.row("Per route"))
    route_by = "service_name, http_request_method, http_route"
    route_legend = "{{service_name}} {{http_request_method}} {{http_route}}"
    panels.append(lay.place(timeseries(
        "Request rate by route and status",
        [prom(
            f"sum by ({route_by}, http_response_status_code) (rate({SERVER}_count{{{SEL}}}[$__rate_interval]))",
            route_legend + " {{http_response_status_code}}",
        )],
        unit="reqps",
        stack=True,
    ), 12, 9))
    panels.append(lay.place(timeseries(
        "Error ratio by route (5xx)",
        [prom(
            f'sum by ({route_by}) (rate({SERVER}_count{{{SEL}, http_response_status_code=~"5.."}}[$__rate_interval]))'
            f" / sum by ({route_by}) (rate({SERVER}_count{{{SEL}}}[$__rate_interval]))",
            route_legend,
        )],
        unit="percentunit",
    ), 12, 9))
    for q in (0.50, 0.95, 0.99):
        panels.append(lay.place(timeseries(
            f"Latency p{int(q * 100)} by route",
            [prom(quantile(q, SERVER, route_by, SEL), route_legend, exemplar=True)],
            unit="s",
            description="Click an exemplar dot to open a request of that route in Tempo.",
        ), 8, 9))

    panels.append(lay.row("Calls to the next hop (client side)"))
    panels.append(lay.place(timeseries(
        "Outgoing request rate by target and status",
        [prom(
            f"sum by (service_name, server_address, http_response_status_code) (rate({CLIENT}_count{{{SEL}}}[$__rate_interval]))",
            "{{service_name}} → {{server_address}} {{http_response_status_code}}",
        )],
        unit="reqps",
        description="gateway → chat and chat → cache, as seen by the caller (http.client.request.duration).",
    ), 12, 8))
    panels.append(lay.place(timeseries(
        "Outgoing request latency p95",
        [prom(quantile(0.95, CLIENT, "service_name, server_address", SEL),
              "{{service_name}} → {{server_address}}", exemplar=True)],
        unit="s",
        description="The difference between this and the callee's own server latency is network and queueing.",
    ), 12, 8))

    panels.append(lay.row("Chat"))
    panels.append(lay.place(timeseries(
        "Chat requests by outcome (gateway)",
        [prom('sum by (chat_outcome) (rate(chat_requests_total[$__rate_interval]))', "{{chat_outcome}}")],
        unit="reqps",
        stack=True,
    ), 12, 8))
    panels.append(lay.place(timeseries(
        "Replies by cache hit (chat)",
        [prom('sum by (cache_hit) (rate(chat_replies_total[$__rate_interval]))', "cache_hit={{cache_hit}}")],
        unit="reqps",
        stack=True,
    ), 12, 8))

    panels.append(lay.row("Service graph"))
    panels.append(lay.place({
        "type": "nodeGraph",
        "title": "Service graph (from traces)",
        "description": "Built by the Collector's service_graph connector; open the Tempo data source's "
        "Service Graph tab for the interactive version.",
        "datasource": TEMPO,
        "targets": [{"datasource": TEMPO, "refId": "A", "queryType": "serviceMap"}],
        "options": {},
    }, 12, 10))
    panels.append(lay.place(timeseries(
        "Edges: request rate",
        [prom('sum by (client, server) (rate(traces_service_graph_request_total[$__rate_interval]))',
              "{{client}} → {{server}}")],
        unit="reqps",
    ), 12, 10))

    variables = [prom_variable("service", "Service", f"label_values({SERVER}_count, service_name)")]
    return dashboard(
        "otel-chat-services",
        "Services overview",
        "Rate, errors and duration of gateway, chat and cache, per service and per route.",
        panels,
        variables,
    )


def cache() -> Json:
    lay = Layout()
    panels: list[Json] = []
    redis_spans = 'service_name="cache", span_kind="SPAN_KIND_CLIENT"'

    panels.append(lay.row("Hit ratio"))
    panels.append(lay.place(stat(
        "Hit ratio (cache service)",
        prom('sum(rate(cache_lookups_total{cache_result="hit"}[$__rate_interval])) '
             "/ sum(rate(cache_lookups_total[$__rate_interval]))", "hit ratio"),
        unit="percentunit",
        description="Share of key lookups in the cache service that found a value.",
    ), 6, 7))
    panels.append(lay.place(stat(
        "Reply hit ratio (chat)",
        prom('sum(rate(chat_replies_total{cache_hit="true"}[$__rate_interval])) '
             "/ sum(rate(chat_replies_total[$__rate_interval]))", "hit ratio"),
        unit="percentunit",
        description="Share of chat replies served from the cache instead of being composed again.",
    ), 6, 7))
    panels.append(lay.place(timeseries(
        "Lookups by result",
        [prom('sum by (cache_result) (rate(cache_lookups_total[$__rate_interval]))', "{{cache_result}}")],
        unit="ops",
        stack=True,
    ), 12, 7))
    panels.append(lay.place(timeseries(
        "Reply duration p95 by cache hit (chat)",
        [prom(quantile(0.95, "chat_reply_duration_seconds", "cache_hit"), "cache_hit={{cache_hit}}",
              exemplar=True)],
        unit="s",
        description="What a hit saves: a miss includes the simulated thinking time. Exemplars open the trace.",
    ), 24, 8))

    panels.append(lay.row("Redis, as seen by the cache service"))
    panels.append(lay.place(timeseries(
        "Redis latency p50 / p95 / p99",
        [
            prom(quantile(0.50, "traces_span_metrics_duration_seconds", "span_name", redis_spans),
                 "p50 {{span_name}}", exemplar=True),
            prom(quantile(0.95, "traces_span_metrics_duration_seconds", "span_name", redis_spans),
                 "p95 {{span_name}}", exemplar=True),
            prom(quantile(0.99, "traces_span_metrics_duration_seconds", "span_name", redis_spans),
                 "p99 {{span_name}}", exemplar=True),
        ],
        unit="s",
        description="Client spans of the cache service (db.system redis), from the Collector's span_metrics connector.",
    ), 12, 9))
    panels.append(lay.place(timeseries(
        "Redis commands per second and errors",
        [
            prom(f"sum by (span_name) (rate(traces_span_metrics_calls_total{{{redis_spans}}}[$__rate_interval]))",
                 "{{span_name}}"),
            prom(f'sum by (span_name) (rate(traces_span_metrics_calls_total{{{redis_spans}, '
                 f'status_code="STATUS_CODE_ERROR"}}[$__rate_interval]))', "errors {{span_name}}"),
        ],
        unit="ops",
    ), 12, 9))
    panels.append(lay.place(timeseries(
        "Service graph edges from cache: rate and server-side p95",
        [
            prom('sum by (client, server) (rate(traces_service_graph_request_total{client="cache"}[$__rate_interval]))',
                 "rate {{client}} → {{server}}"),
            prom('histogram_quantile(0.95, sum by (client, server, le) '
                 '(rate(traces_service_graph_request_server_seconds_bucket{client="cache"}[$__rate_interval])))',
                 "p95 {{client}} → {{server}}"),
        ],
        unit="short",
        description="The cache → redis edge of the service graph (the database appears as a virtual server node).",
    ), 24, 8))

    return dashboard("otel-chat-cache", "Cache", "Cache effectiveness and Redis latency.", panels, [])


def collector() -> Json:
    lay = Layout()
    panels: list[Json] = []
    signals = (("spans", "spans"), ("metric_points", "metric points"), ("log_records", "log records"))

    def per_signal(metric: str, by: str, legend: str) -> list[Json]:
        return [
            prom(f"sum by ({by}) (rate({metric.format(s)}[$__rate_interval]))", f"{label} {legend}")
            for s, label in signals
        ]

    panels.append(lay.row("Receivers"))
    panels.append(lay.place(timeseries(
        "Accepted",
        per_signal("otelcol_receiver_accepted_{}_total", "receiver", "{{receiver}}"),
        unit="short",
        description="Items per second the receivers pushed into the pipelines.",
    ), 12, 8))
    panels.append(lay.place(timeseries(
        "Refused",
        per_signal("otelcol_receiver_refused_{}_total", "receiver", "{{receiver}}"),
        unit="short",
        description="Items per second refused (back-pressure, e.g. memory_limiter). Alert: OtelCollectorRefusingData.",
    ), 12, 8))

    panels.append(lay.row("Exporters"))
    panels.append(lay.place(timeseries(
        "Sent",
        per_signal("otelcol_exporter_sent_{}_total", "exporter", "{{exporter}}"),
        unit="short",
        description="Items per second delivered to Tempo, Prometheus and Loki.",
    ), 12, 8))
    panels.append(lay.place(timeseries(
        "Dropped: send failed after retries, or queue full",
        per_signal("otelcol_exporter_send_failed_{}_total", "exporter", "failed {{exporter}}")
        + per_signal("otelcol_exporter_enqueue_failed_{}_total", "exporter", "queue full {{exporter}}"),
        unit="short",
        description="Items per second the Collector accepted but will not deliver. Alert: OtelCollectorDroppingData.",
    ), 12, 8))
    panels.append(lay.place(timeseries(
        "Sending queue size and capacity",
        [
            prom("sum by (exporter) (otelcol_exporter_queue_size)", "size {{exporter}}"),
            prom("sum by (exporter) (otelcol_exporter_queue_capacity)", "capacity {{exporter}}"),
        ],
        unit="short",
        description="Batches waiting per exporter. Alert OtelCollectorQueueNearlyFull fires above 80%.",
    ), 12, 8))
    panels.append(lay.place(timeseries(
        "Scrape of the Collector's metrics",
        [prom('up{job="otel-collector"}', "{{instance}}")],
        unit="short",
        description="1 when Prometheus can scrape :8888. Alert: OtelCollectorDown.",
    ), 12, 8))

    return dashboard(
        "otel-chat-collector",
        "OpenTelemetry Collector",
        "What the Collector receives, refuses, delivers, queues and drops.",
        panels,
        [],
    )


def logs() -> Json:
    lay = Layout()
    panels: list[Json] = []
    selector = '{service_name=~"$service"}'

    panels.append(lay.place(text(
        "Logs of the services, shipped over OTLP. `trace_id` and `span_id` are structured "
        "metadata: expand a line and use **Open trace** next to `trace_id` to jump to Tempo. "
        "Filter by a trace with the *Trace id* box (a regular expression)."
    ), 24, 3))
    panels.append(lay.place({
        "type": "timeseries",
        "title": "Log lines by service and level",
        "datasource": LOKI,
        "targets": [{
            "datasource": LOKI,
            "refId": "A",
            "expr": f'sum by (service_name, detected_level) (count_over_time({selector} | trace_id=~"$trace_id" [$__auto]))',
            "legendFormat": "{{service_name}} {{detected_level}}",
            "queryType": "range",
        }],
        "fieldConfig": {"defaults": {"unit": "short", "custom": {"drawStyle": "bars", "fillOpacity": 60,
                                                                 "stacking": {"mode": "normal", "group": "A"}}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }, 24, 7))
    for title, query, h in (
        ("Errors and warnings", f'{selector} | trace_id=~"$trace_id" | detected_level=~"error|warn"', 9),
        ("All lines", f'{selector} | trace_id=~"$trace_id" |~ "$search"', 14),
    ):
        panels.append(lay.place({
            "type": "logs",
            "title": title,
            "datasource": LOKI,
            "targets": [{"datasource": LOKI, "refId": "A", "expr": query, "queryType": "range"}],
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
        }, 24, h))

    variables = [
        {
            "type": "query",
            "name": "service",
            "label": "Service",
            "datasource": LOKI,
            "query": {"type": 1, "label": "service_name", "stream": "", "refId": "LokiVariableQueryEditor-VariableQuery"},
            "definition": "label_values(service_name)",
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        },
        {"type": "textbox", "name": "trace_id", "label": "Trace id", "query": ".*",
         "current": {"text": ".*", "value": ".*"}},
        {"type": "textbox", "name": "search", "label": "Line contains (regex)", "query": "",
         "current": {"text": "", "value": ""}},
    ]
    return dashboard(
        "otel-chat-logs",
        "Logs",
        "Log lines of gateway, chat and cache, with links to their traces.",
        panels,
        variables,
    )


DASHBOARDS = {
    "services-overview.json": services_overview,
    "cache.json": cache,
    "collector.json": collector,
    "logs.json": logs,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args()

    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT_DIR / name
        content = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(str(path))
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("stale dashboards (run python3 scripts/gen_dashboards.py):\n  " + "\n  ".join(stale),
              file=sys.stderr)
        return 1
    if args.check:
        print(f"gen_dashboards: {len(DASHBOARDS)} dashboards up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
