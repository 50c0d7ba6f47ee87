#!/usr/bin/env python3
"""Native smoke test of the telemetry pipeline, no Docker and no services.

Starts the tools built by scripts/tools.sh on loopback - VictoriaLogs, Jaeger v2
(deploy/jaeger/config.yaml), Prometheus 3 (OTLP receiver on) and the Collector
(otel-collector/config.yaml with otel-collector/native.env) - sends one trace, one log
record and three metrics to the Collector as OTLP/JSON over HTTP, and checks that:

- the trace is in Jaeger (/api/traces/<id>) with its credential header masked;
- the log record is in VictoriaLogs (LogsQL trace_id:"<id>") with its api_key masked;
- the metrics are in Prometheus under the names its OTLP translation gives them;
- span metrics and their trace_id exemplars, and the service-graph edges
  user->gateway, gateway->chat, chat->cache, cache->redis reach Prometheus.

Ports are the native defaults (4317/4318/13133/8888 Collector, 14317/14318/16686/16685/13134
/8889 Jaeger, 9090 Prometheus, 9428 VictoriaLogs): stop a running native stack first.
Everything runs in a temporary directory, removed at the end (--keep to keep it).

    scripts/smoke_native.py [--keep] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("TOOLS_DIR", REPO / ".tools")) / "bin"
COLLECTOR_HTTP = "http://127.0.0.1:4318"
JAEGER_QUERY = "http://127.0.0.1:16686"
PROMETHEUS = "http://127.0.0.1:9090"
VICTORIALOGS = "http://127.0.0.1:9428"

# What the native Prometheus needs for pushed OTLP data (the Docker stack's own file is in
# deploy/): an out-of-order window, since pushes from several sources interleave, and the
# resource attributes to promote to labels.
PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 15s
storage:
  tsdb:
    out_of_order_time_window: 30m
otlp:
  promote_resource_attributes: [service.namespace, deployment.environment.name]
  keep_identifying_resource_attributes: true
"""

SERVICE_GRAPH_EDGES = [
    ("user", "gateway"),
    ("gateway", "chat"),
    ("chat", "cache"),
    ("cache", "redis"),
]


class CheckError(Exception):
    """A check failed; the message says which and what was seen."""


class Process:
    """One started tool, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            # argv is built here from fixed tool paths, no shell.
            self.proc = subprocess.Popen(  # noqa: S603
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"    {line}" for line in text[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(method: str, url: str, body: Any = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    # Only the fixed http://127.0.0.1 URLs above are opened.
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, **params: str) -> Any:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    status, body = http("GET", url)
    if status != 200:
        raise CheckError(f"GET {url}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


def poll(what: str, check: Callable[[], Any], timeout: float, procs: list[Process]) -> Any:
    """Call check until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        for p in procs:
            if p.proc.poll() is not None:
                raise CheckError(
                    f"{p.name} exited ({p.proc.returncode}) while waiting for {what}:\n{p.tail()}"
                )
        try:
            result = check()
            if result:
                return result
            last = result
        except (CheckError, OSError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise CheckError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(0.5)


def ready(url: str) -> bool:
    return http("GET", url)[0] == 200


def now_ns() -> int:
    return time.time_ns()


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def resource(service: str) -> dict[str, Any]:
    return {
        "attributes": [
            attr("service.name", service),
            attr("service.instance.id", f"{service}-smoke"),
        ]
    }


def trace_payload(trace_id: str, ids: dict[str, str]) -> dict[str, Any]:
    """gateway (root) -> chat -> cache -> Redis, the demo's request chain."""
    end = now_ns()
    start = end - 50_000_000
    server, client = 2, 3  # OTLP SpanKind values

    def span(
        name: str, key: str, parent: str | None, kind: int, attrs: list[dict[str, Any]]
    ) -> dict[str, Any]:
        s: dict[str, Any] = {
            "traceId": trace_id,
            "spanId": ids[key],
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": attrs,
            "status": {},
        }
        if parent:
            s["parentSpanId"] = ids[parent]
        return s

    http_server = [
        attr("http.request.method", "POST"),
        attr("http.route", "/chat"),
        attr("http.response.status_code", 200),
    ]
    return {
        "resourceSpans": [
            {
                "resource": resource("gateway"),
                "scopeSpans": [
                    {
                        "scope": {"name": "smoke"},
                        "spans": [
                            span(
                                "POST /chat",
                                "gw_server",
                                None,
                                server,
                                [
                                    *http_server,
                                    attr(
                                        "http.request.header.authorization", ["Bearer smoke-secret"]
                                    ),
                                ],
                            ),
                            span(
                                "POST",
                                "gw_client",
                                "gw_server",
                                client,
                                [
                                    attr("http.request.method", "POST"),
                                    attr("server.address", "127.0.0.1"),
                                ],
                            ),
                        ],
                    }
                ],
            },
            {
                "resource": resource("chat"),
                "scopeSpans": [
                    {
                        "scope": {"name": "smoke"},
                        "spans": [
                            span("POST /chat", "chat_server", "gw_client", server, http_server),
                            span(
                                "GET",
                                "chat_client",
                                "chat_server",
                                client,
                                [attr("http.request.method", "GET")],
                            ),
                        ],
                    }
                ],
            },
            {
                "resource": resource("cache"),
                "scopeSpans": [
                    {
                        "scope": {"name": "smoke"},
                        "spans": [
                            span(
                                "GET /cache/{key}",
                                "cache_server",
                                "chat_client",
                                server,
                                [
                                    attr("http.request.method", "GET"),
                                    attr("http.route", "/cache/{key}"),
                                ],
                            ),
                            span(
                                "GET",
                                "redis",
                                "cache_server",
                                client,
                                [
                                    attr("db.system", "redis"),
                                    attr("server.address", "localhost"),
                                    attr("server.port", 6379),
                                ],
                            ),
                        ],
                    }
                ],
            },
        ]
    }


def log_payload(trace_id: str, span_id: str, marker: str) -> dict[str, Any]:
    t = str(now_ns())
    return {
        "resourceLogs": [
            {
                "resource": resource("gateway"),
                "scopeLogs": [
                    {
                        "scope": {"name": "smoke"},
                        "logRecords": [
                            {
                                "timeUnixNano": t,
                                "observedTimeUnixNano": t,
                                "severityNumber": 9,
                                "severityText": "INFO",
                                "body": {"stringValue": f"smoke log {marker}"},
                                "attributes": [
                                    attr("api_key", "smoke-secret"),
                                    attr("chat.turn", 1),
                                ],
                                "traceId": trace_id,
                                "spanId": span_id,
                            }
                        ],
                    }
                ],
            }
        ]
    }


def metrics_payload(marker: str) -> dict[str, Any]:
    end = now_ns()
    start = end - 1_000_000_000
    point = {
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(end),
        "attributes": [attr("smoke.run", marker)],
    }
    return {
        "resourceMetrics": [
            {
                "resource": resource("gateway"),
                "scopeMetrics": [
                    {
                        "scope": {"name": "smoke"},
                        "metrics": [
                            {
                                "name": "smoke.requests",
                                "unit": "{request}",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [{**point, "asInt": "3"}],
                                },
                            },
                            {
                                "name": "smoke.queue.size",
                                "unit": "1",
                                "gauge": {"dataPoints": [{**point, "asDouble": 0.5}]},
                            },
                            {
                                "name": "smoke.duration",
                                "unit": "s",
                                "histogram": {
                                    "aggregationTemporality": 2,
                                    "dataPoints": [
                                        {
                                            **point,
                                            "count": "2",
                                            "sum": 0.3,
                                            "explicitBounds": [0.1, 1.0],
                                            "bucketCounts": ["1", "1", "0"],
                                        }
                                    ],
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }


def prom_query(query: str) -> list[dict[str, Any]]:
    result = get_json(f"{PROMETHEUS}/api/v1/query", query=query)
    series: list[dict[str, Any]] = result["data"]["result"]
    return series


def run(args: argparse.Namespace, tmp: Path) -> None:
    for tool in ("otelcol", "jaeger", "prometheus", "victoria-logs"):
        if not (BIN / tool).exists():
            raise CheckError(f"{BIN / tool} is missing: run scripts/tools.sh")
    (tmp / "prometheus.yml").write_text(PROMETHEUS_CONFIG)
    env = dict(os.environ)
    for line in (REPO / "otel-collector" / "native.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value

    procs: list[Process] = []
    try:
        procs.append(
            Process(
                "victoria-logs",
                [
                    str(BIN / "victoria-logs"),
                    f"-storageDataPath={tmp / 'vlogs'}",
                    "-httpListenAddr=127.0.0.1:9428",
                    "-retentionPeriod=1d",
                ],
                tmp,
                env,
            )
        )
        procs.append(
            Process(
                "jaeger",
                [str(BIN / "jaeger"), "--config", str(REPO / "deploy/jaeger/config.yaml")],
                tmp,
                env,
            )
        )
        procs.append(
            Process(
                "prometheus",
                [
                    str(BIN / "prometheus"),
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'prometheus'}",
                    "--web.listen-address=127.0.0.1:9090",
                    "--web.enable-otlp-receiver",
                    "--enable-feature=exemplar-storage",
                ],
                tmp,
                env,
            )
        )
        procs.append(
            Process(
                "otelcol",
                [str(BIN / "otelcol"), f"--config={REPO / 'otel-collector/config.yaml'}"],
                tmp,
                env,
            )
        )
        t0 = time.monotonic()
        for what, url in [
            ("VictoriaLogs", f"{VICTORIALOGS}/health"),
            ("Jaeger", "http://127.0.0.1:13134/status"),
            ("Prometheus", f"{PROMETHEUS}/-/ready"),
            ("Collector", "http://127.0.0.1:13133/"),
        ]:
            poll(f"{what} ready ({url})", functools.partial(ready, url), args.timeout, procs)
        print(f"ok: all four started and ready in {time.monotonic() - t0:.1f}s")

        trace_id = secrets.token_hex(16)
        ids = {
            k: secrets.token_hex(8)
            for k in (
                "gw_server",
                "gw_client",
                "chat_server",
                "chat_client",
                "cache_server",
                "redis",
            )
        }
        marker = secrets.token_hex(4)
        for signal, payload in [
            ("traces", trace_payload(trace_id, ids)),
            ("logs", log_payload(trace_id, ids["gw_server"], marker)),
            ("metrics", metrics_payload(marker)),
        ]:
            status, body = http("POST", f"{COLLECTOR_HTTP}/v1/{signal}", payload)
            if status != 200:
                raise CheckError(f"POST /v1/{signal}: HTTP {status}: {body[:300]!r}")
        print(f"ok: sent 1 trace (6 spans), 1 log record, 3 metrics (trace_id {trace_id})")

        def jaeger_trace() -> Any:
            data = get_json(f"{JAEGER_QUERY}/api/traces/{trace_id}").get("data") or []
            return data[0] if data and len(data[0]["spans"]) == 6 else None

        trace = poll("the trace in Jaeger", jaeger_trace, args.timeout, procs)
        root = next(s for s in trace["spans"] if s["spanID"] == ids["gw_server"])
        header = next(
            (t["value"] for t in root["tags"] if t["key"] == "http.request.header.authorization"),
            None,
        )
        if header is None or "smoke-secret" in json.dumps(header):
            raise CheckError(f"authorization header not masked in Jaeger: {header!r}")
        env_tags = {
            t["value"]
            for p in trace["processes"].values()
            for t in p["tags"]
            if t["key"] == "deployment.environment.name"
        }
        print(
            f"ok: Jaeger has the trace, 6 spans; authorization header = {header!r}; "
            f"deployment.environment.name = {sorted(env_tags)}"
        )

        def victoria_log() -> Any:
            status, body = http(
                "GET",
                f"{VICTORIALOGS}/select/logsql/query?"
                + urllib.parse.urlencode({"query": f'trace_id:"{trace_id}"'}),
            )
            rows = (
                [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                if status == 200
                else []
            )
            return rows[0] if rows else None

        row = poll("the log record in VictoriaLogs", victoria_log, args.timeout, procs)
        if marker not in row.get("_msg", "") or row.get("api_key") != "****":
            raise CheckError(f"unexpected log row in VictoriaLogs: {row}")
        print(
            f"ok: VictoriaLogs has the log record: _msg={row['_msg']!r}, "
            f"api_key={row['api_key']!r}, fields: {', '.join(sorted(row))}"
        )

        expected = {
            "smoke_requests_total": "counter",
            "smoke_queue_size_ratio": "gauge",
            "smoke_duration_seconds_bucket": "histogram",
        }
        for name in expected:
            series = poll(
                f"{name} in Prometheus",
                functools.partial(prom_query, f'{name}{{smoke_run="{marker}"}}'),
                args.timeout,
                procs,
            )
        names = get_json(
            f"{PROMETHEUS}/api/v1/label/__name__/values", **{"match[]": '{__name__=~"smoke_.*"}'}
        )
        labels = series[0]["metric"]
        print(
            f"ok: Prometheus has the test metrics as {', '.join(names['data'])}; "
            f"labels of one: {json.dumps(labels, sort_keys=True)}"
        )

        # span_metrics first sends a new series with value 0 (so that increase() counts the
        # first call), the count one flush (5 s) later: wait for all three services' counts.
        calls = poll(
            "span metrics of gateway, chat and cache in Prometheus",
            lambda: (
                (r := prom_query("sum by (service_name) (traces_span_metrics_calls_total) > 0"))
                and len(r) >= 3
                and r
            ),
            args.timeout,
            procs,
        )
        poll(
            "traces_span_metrics_duration_seconds_bucket",
            lambda: prom_query(
                'traces_span_metrics_duration_seconds_bucket{service_name="gateway"}'
            ),
            args.timeout,
            procs,
        )
        print(
            f"ok: span metrics: calls by service: "
            f"{ {r['metric']['service_name']: r['value'][1] for r in calls} }"
        )

        def exemplar() -> Any:
            end = time.time()
            data = get_json(
                f"{PROMETHEUS}/api/v1/query_exemplars",
                query='traces_span_metrics_duration_seconds_bucket{service_name="gateway"}',
                start=str(end - 600),
                end=str(end + 60),
            )["data"]
            return [e for s in data for e in s["exemplars"] if trace_id in json.dumps(e["labels"])]

        found = poll("a span-metrics exemplar with the trace id", exemplar, args.timeout, procs)
        print(f"ok: exemplar labels: {found[0]['labels']}")

        for client, server in SERVICE_GRAPH_EDGES:
            query = f'traces_service_graph_request_total{{client="{client}",server="{server}"}}'
            edge = poll(
                f"service-graph edge {client}->{server}",
                functools.partial(prom_query, query),
                args.timeout,
                procs,
            )
            m = edge[0]["metric"]
            print(
                f"ok: edge {client}->{server} connection_type={m.get('connection_type', '')!r} "
                f"failed={m.get('failed')!r}"
            )
        poll(
            "service-graph latency histogram",
            lambda: prom_query(
                'traces_service_graph_request_server_seconds_bucket{client="gateway"}'
            ),
            args.timeout,
            procs,
        )
        print("ok: traces_service_graph_request_server_seconds_bucket present")
    except CheckError:
        for p in procs:
            print(f"--- {p.name} log ({p.log}):\n{p.tail()}", file=sys.stderr)
        raise
    finally:
        for p in reversed(procs):
            p.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, data)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each check"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="otel-smoke-"))
    try:
        run(args, tmp)
    except CheckError as exc:
        print(f"smoke_native: FAIL: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("smoke_native: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
