#!/usr/bin/env python3
"""Generate the Grafana dashboards of the demo as JSON (deploy/grafana/dashboards/).

    python3 deploy/grafana/generate.py           # (re)write the JSON files
    python3 deploy/grafana/generate.py --check   # exit 1 if a committed file is stale

The dashboards are built with grafana-foundation-sdk, Grafana's typed builders generated
from its own schemas: a misspelled option or a value of the wrong type is a mypy error
here, not a key Grafana silently ignores. The JSON is committed too, so Grafana needs
nothing but the files; this script is the place to edit them.

Queries are written against the metric names of Prometheus 3's OTLP translation
(deploy/prometheus/prometheus.yml): every pushed series carries `service_name`; span
metrics and the service graph come from the Collector's connectors. Data source uids
(prometheus, tempo, loki) are the ones provisioned in
deploy/grafana/provisioning/datasources/datasources.yaml; checks/grafana.py checks
that both agree, that every PromQL expression parses, and that the SDK's models decode
each file without dropping or adding a key.
"""

# ruff: noqa: E501 - PromQL/LogQL queries and panel descriptions read best on one line

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import (
    logs,
    loki,
    nodegraph,
    prometheus,
    stat,
    tempo,
    text,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.text import TextMode

OUT_DIR = Path(__file__).resolve().parent / "dashboards"  # beside this file
# Last schema version of the v1 dashboard JSON model (Grafana 13 still reads v1 JSON);
# the SDK's own default is one behind.
SCHEMA_VERSION = 42

PROM = common.DataSourceRef(type_val="prometheus", uid="prometheus")
TEMPO = common.DataSourceRef(type_val="tempo", uid="tempo")
LOKI = common.DataSourceRef(type_val="loki", uid="loki")

Query = prometheus.Dataquery | loki.Dataquery | tempo.TempoQuery
Panel = Builder[model.Panel]

# --- building blocks ----------------------------------------------------------


def prom(expr: str, legend: str, *, exemplar: bool = False) -> prometheus.Dataquery:
    """A PromQL range query; exemplars link latency samples to their traces in Tempo."""
    return (
        prometheus.Dataquery()
        .datasource(PROM)
        .expr(expr)
        .legend_format(legend)
        .range()
        .exemplar(exemplar)
    )


def logql(expr: str, legend: str = "") -> loki.Dataquery:
    query = loki.Dataquery().datasource(LOKI).expr(expr).query_type("range")
    return query.legend_format(legend) if legend else query


def lettered(queries: Sequence[Query]) -> list[Builder[Dataquery]]:
    """The queries of one panel, with Grafana's refIds A, B, C, ..."""
    return [query.ref_id(chr(ord("A") + i)) for i, query in enumerate(queries)]


def quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    """histogram_quantile over a classic histogram (`<metric>_bucket`), grouped by `by`."""
    matchers = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{matchers}[$__rate_interval])))"


def graph(
    title: str,
    queries: Sequence[Query],
    *,
    w: int,
    h: int,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    bars: bool = False,
    datasource: common.DataSourceRef = PROM,
) -> timeseries.Panel:
    """A time series panel: lines (or bars), from 0, a table legend with mean and max."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource)
        .targets(lettered(queries))
        .span(w)
        .height(h)
        .unit(unit)
        .min(0)
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(60 if bars else 10 if stack else 0)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            common_builders.StackingConfig()
            .mode(common.StackingMode.NORMAL if stack else common.StackingMode.NONE)
            .group("A")
        )
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .calcs(["mean", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def single_stat(
    title: str, query: prometheus.Dataquery, *, w: int, h: int, unit: str, description: str = ""
) -> stat.Panel:
    """One number (the last value) with its sparkline."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .targets(lettered([query]))
        .span(w)
        .height(h)
        .unit(unit)
        .decimals(1)
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
        )
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.AUTO)
    )


def log_lines(title: str, query: loki.Dataquery, *, w: int, h: int) -> logs.Panel:
    """Log lines, newest first, with details (and so the link to the trace) on expanding."""
    return (
        logs.Panel()
        .title(title)
        .datasource(LOKI)
        .targets(lettered([query]))
        .span(w)
        .height(h)
        .show_time(True)
        .show_labels(False)
        .show_common_labels(False)
        .wrap_log_message(True)
        .prettify_log_message(False)
        .enable_log_details(True)
        .dedup_strategy(common.LogsDedupStrategy.NONE)
        .sort_order(common.LogsSortOrder.DESCENDING)
    )


def markdown(content: str, *, w: int, h: int) -> text.Panel:
    return text.Panel().title("").mode(TextMode.MARKDOWN).content(content).span(w).height(h)


def service_graph(title: str, *, w: int, h: int, description: str = "") -> nodegraph.Panel:
    """The service graph, as Tempo's data source builds it from the service-graph metrics."""
    query = tempo.TempoQuery().datasource(TEMPO).query_type("serviceMap")
    return (
        nodegraph.Panel()
        .title(title)
        .description(description)
        .datasource(TEMPO)
        .targets(lettered([query]))
        .span(w)
        .height(h)
    )


def multi_variable(
    name: str,
    label: str,
    datasource: common.DataSourceRef,
    query: dict[str, object],
    all_value: str,
) -> dashboard_builders.QueryVariable:
    """A multi-value variable from label values; "All" matches with `all_value`."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(datasource)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def textbox(name: str, label: str, default: str) -> dashboard_builders.TextBoxVariable:
    return (
        dashboard_builders.TextBoxVariable(name)
        .label(label)
        .default_value(default)
        .current(model.VariableOption(text=default, value=default))
    )


class Board:
    """One dashboard. The SDK's builder places panels left to right on Grafana's
    24-column grid (each row of panels here adds up to 24); ids are numbered in order."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.builder = (
            dashboard_builders.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["otel-chat-demo"])
            .readonly()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)  # shared crosshair across panels
            .refresh("10s")
            .time("now-30m", "now")
            .timezone("browser")
            .version(1)
            .link(
                dashboard_builders.DashboardLink("Dashboards")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags(["otel-chat-demo"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )

    def row(self, title: str) -> None:
        self.builder.with_row(dashboard_builders.Row(title))

    def add(self, *panels: Panel) -> None:
        for panel in panels:
            self.builder.with_panel(panel)

    def variables(self, *variables: Builder[model.VariableModel]) -> None:
        self.builder.variables(list(variables))

    def build(self) -> model.Dashboard:
        dashboard = self.builder.build()
        dashboard.schema_version = SCHEMA_VERSION
        for number, panel in enumerate(dashboard.panels or [], start=1):
            panel.id_val = number
        return dashboard


# --- the dashboards -----------------------------------------------------------

SERVER = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
SEL = 'service_name=~"$service"'
ROUTE_BY = "service_name, http_request_method, http_route"
ROUTE_LEGEND = "{{service_name}} {{http_request_method}} {{http_route}}"
RATE = "[$__rate_interval]"
# The panel that tells replicas apart (the end-to-end test of replicas runs its query).
REQUESTS_PER_INSTANCE = "Requests per instance"


def or_zero(failures: str, total: str) -> str:
    """`failures`, or 0 for every series of `total` that has none yet.

    Failure counters appear only after the first failure: without this a healthy
    stack shows "No data" where it should show 0. The fallback would also hide a
    `failures` query that can never match (a misspelled label), so the end-to-end
    test asks for data from the query without it too (see without_zero_fallback).
    """
    return f"({failures}) or ({total}) * 0"


# The fallback or_zero appends; `total` is a sum(...) that never itself holds ") * 0".
_ZERO_FALLBACK = re.compile(r" or \(.*?\) \* 0")


def without_zero_fallback(expr: str) -> str | None:
    """`expr` with each or_zero fallback removed: only real failures left. None when
    `expr` has no fallback."""
    stripped = _ZERO_FALLBACK.sub("", expr)
    return stripped if stripped != expr else None


def services_overview() -> model.Dashboard:
    b = Board(
        "otel-chat-services",
        "Services overview",
        "Rate, errors and duration of gateway, chat and cache, per service and per route.",
    )

    b.row("Requests per service (server side)")
    b.add(
        graph(
            "Request rate",
            [
                prom(
                    f"sum by (service_name) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                    "{{service_name}}",
                )
            ],
            unit="reqps",
            w=8,
            h=8,
            description="HTTP requests served per second (http.server.request.duration count).",
        ),
        graph(
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
        ),
        graph(
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
        ),
    )

    b.row("Replicas")
    b.add(
        graph(
            REQUESTS_PER_INSTANCE,
            [
                prom(
                    f"sum by (service_name, service_instance_id) (rate({SERVER}_count{{{SEL}}}{RATE}))",
                    "{{service_name}} {{service_instance_id}}",
                )
            ],
            unit="reqps",
            w=24,
            h=8,
            description="One line per process: each reports its own service.instance.id (a UUID at start). "
            "With replicas (CHAT_REPLICAS=3 make up / make dev, or docker compose up --scale chat=3), lines of one service "
            "close together mean its callers spread their calls (client-side round-robin: docs/operate/scaling.md); "
            "a line at 0 is a replica that gets no traffic. A restarted process is a new line.",
        ),
    )

    b.row("Per route")
    b.add(
        graph(
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
        ),
        graph(
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
        ),
        *(
            graph(
                f"Latency p{int(q * 100)} by route",
                [prom(quantile(q, SERVER, ROUTE_BY, SEL), ROUTE_LEGEND, exemplar=True)],
                unit="s",
                w=8,
                h=9,
                description="Click an exemplar dot to open a request of that route in Tempo.",
            )
            for q in (0.50, 0.95, 0.99)
        ),
    )

    b.row("Calls to the next hop (client side)")
    b.add(
        graph(
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
        ),
        graph(
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
        ),
    )

    b.row("Chat")
    b.add(
        graph(
            "Chat requests by outcome (gateway)",
            [prom(f"sum by (chat_outcome) (rate(chat_requests_total{RATE}))", "{{chat_outcome}}")],
            unit="reqps",
            stack=True,
            w=12,
            h=8,
        ),
        graph(
            "Replies by cache hit (chat)",
            [
                prom(
                    f"sum by (cache_hit) (rate(chat_replies_total{RATE}))",
                    "cache_hit={{cache_hit}}",
                )
            ],
            unit="reqps",
            stack=True,
            w=12,
            h=8,
        ),
        graph(
            "Degraded replies (chat)",
            [
                prom(
                    or_zero(
                        f"sum by (chat_degraded_reason) (rate(chat_degraded_total{RATE}))",
                        f"sum(rate(chat_replies_total{RATE}))",
                    ),
                    "{{chat_degraded_reason}}",
                )
            ],
            unit="reqps",
            description="Replies made without the cache service (it failed): uncached, "
            "and with history_unsaved not saved either. Alert: RepliesDegraded.",
            w=24,
            h=6,
        ),
    )

    b.row("Service graph")
    b.add(
        service_graph(
            "Service graph (from traces)",
            w=12,
            h=10,
            description="Built from the Collector's service-graph connector; Tempo's Service Graph tab in Explore is the interactive version.",
        ),
        graph(
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
        ),
    )

    query = f"label_values({SERVER}_count, service_name)"
    b.variables(
        multi_variable(
            "service",
            "Service",
            PROM,
            {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            ".*",
        )
    )
    return b.build()


def cache() -> model.Dashboard:
    b = Board("otel-chat-cache", "Cache", "Cache effectiveness and Redis latency.")
    redis = 'service_name="cache", span_kind="SPAN_KIND_CLIENT"'
    edges = 'client="cache"'

    b.row("Hit ratio")
    b.add(
        single_stat(
            "Hit ratio (cache service)",
            prom(
                f'sum(rate(cache_lookups_total{{cache_result="hit"}}{RATE})) / sum(rate(cache_lookups_total{RATE}))',
                "hit ratio",
            ),
            unit="percentunit",
            w=6,
            h=7,
            description="Share of key lookups in the cache service that found a value.",
        ),
        single_stat(
            "Reply hit ratio (chat)",
            prom(
                f'sum(rate(chat_replies_total{{cache_hit="true"}}{RATE})) / sum(rate(chat_replies_total{RATE}))',
                "hit ratio",
            ),
            unit="percentunit",
            w=6,
            h=7,
            description="Share of chat replies served from the cache instead of being composed again.",
        ),
        graph(
            "Lookups by result",
            [prom(f"sum by (cache_result) (rate(cache_lookups_total{RATE}))", "{{cache_result}}")],
            unit="ops",
            stack=True,
            w=12,
            h=7,
        ),
        graph(
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
        ),
    )

    b.row("Redis, as seen by the cache service")
    b.add(
        graph(
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
        ),
        graph(
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
        ),
        graph(
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
        ),
        graph(
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
        ),
    )
    return b.build()


def collector() -> model.Dashboard:
    b = Board(
        "otel-chat-collector",
        "OpenTelemetry Collector",
        "What the Collector receives, refuses, delivers, queues and drops.",
    )
    signals = (
        ("spans", "spans"),
        ("metric_points", "metric points"),
        ("log_records", "log records"),
    )

    def per_signal(
        metric: str, by: str, legend: str, *, zero_like: str = ""
    ) -> list[prometheus.Dataquery]:
        """One query per signal: `metric` has a {} where the signal's name goes.
        `zero_like`: a metric of the same components that always exists, for a 0
        while `metric` (a failure counter) has not appeared yet."""

        def expr(s: str) -> str:
            rate = f"sum by ({by}) (rate({metric.format(s)}{RATE}))"
            if zero_like:
                return or_zero(rate, f"sum by ({by}) (rate({zero_like.format(s)}{RATE}))")
            return rate

        return [prom(expr(s), f"{label} {legend}") for s, label in signals]

    b.row("Receivers")
    b.add(
        graph(
            "Accepted",
            per_signal("otelcol_receiver_accepted_{}_total", "receiver", "{{receiver}}"),
            w=12,
            h=8,
            description="Items per second the receivers pushed into the pipelines.",
        ),
        graph(
            "Refused",
            per_signal("otelcol_receiver_refused_{}_total", "receiver", "{{receiver}}"),
            w=12,
            h=8,
            description="Items per second refused (back-pressure, e.g. memory_limiter). Alert: OtelCollectorRefusingData.",
        ),
    )

    b.row("Exporters")
    b.add(
        graph(
            "Sent",
            per_signal("otelcol_exporter_sent_{}_total", "exporter", "{{exporter}}"),
            w=12,
            h=8,
            description="Items per second delivered to Tempo, Prometheus and Loki.",
        ),
        graph(
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
        ),
        graph(
            "Sending queue size and capacity",
            [
                prom("sum by (exporter) (otelcol_exporter_queue_size)", "size {{exporter}}"),
                prom(
                    "sum by (exporter) (otelcol_exporter_queue_capacity)", "capacity {{exporter}}"
                ),
            ],
            w=12,
            h=8,
            description="Batches waiting per exporter. Alert OtelCollectorQueueNearlyFull fires above 80%.",
        ),
        graph(
            "Scrape of the Collector's metrics",
            [prom('up{job="otel-collector"}', "{{instance}}")],
            w=12,
            h=8,
            description="1 when Prometheus can scrape :8888. Alert: OtelCollectorDown.",
        ),
    )
    return b.build()


def logs_dashboard() -> model.Dashboard:
    b = Board(
        "otel-chat-logs",
        "Logs",
        "Log lines of gateway, chat and cache, with links to their traces.",
    )
    # trace_id is structured metadata (not a label): a filter after the stream selector.
    # `0*`: an id copied from Tempo's search lacks its leading zeros (check_stack.py).
    selector = '{service_name=~"$service"} | trace_id=~"0*$trace_id"'

    b.add(
        markdown(
            "Logs of the services, shipped over OTLP. `trace_id` and `span_id` are structured metadata: "
            "expand a line and use **Open trace** next to `trace_id` to jump to Tempo. "
            "Filter by a trace with the *Trace id* box (a regular expression).",
            w=24,
            h=3,
        ),
        graph(
            "Log lines by service and level",
            [
                logql(
                    f"sum by (service_name, detected_level) (count_over_time({selector} [$__auto]))",
                    "{{service_name}} {{detected_level}}",
                )
            ],
            datasource=LOKI,
            stack=True,
            bars=True,
            w=24,
            h=7,
        ),
        log_lines(
            "Errors and warnings", logql(f'{selector} | detected_level=~"error|warn"'), w=24, h=9
        ),
        log_lines("All lines", logql(f'{selector} |~ "$search"'), w=24, h=14),
    )
    b.variables(
        multi_variable(
            "service",
            "Service",
            LOKI,
            {
                "type": 1,
                "label": "service_name",
                "stream": "",
                "refId": "LokiVariableQueryEditor-VariableQuery",
            },
            ".+",
        ),
        textbox("trace_id", "Trace id", ".*"),
        textbox("search", "Line contains (regex)", ""),
    )
    return b.build()


DASHBOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "services-overview.json": services_overview,
    "cache.json": cache,
    "collector.json": collector,
    "logs.json": logs_dashboard,
}


def render(dashboard: model.Dashboard) -> str:
    """The file's content: the SDK's JSON encoding, indented, one trailing newline."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="Generate the Grafana dashboards of the demo.")
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args()

    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT_DIR / name
        content = render(build())
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(str(path))
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(
            "stale dashboards (run python3 deploy/grafana/generate.py):\n  " + "\n  ".join(stale),
            file=sys.stderr,
        )
        return 1
    if args.check:
        print(f"gen_dashboards: {len(DASHBOARDS)} dashboards up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
