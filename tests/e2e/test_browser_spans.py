"""The chat page's span relay, attacked as an outsider would, on the native stack:
forged exports through the gateway's ``POST /otlp/v1/traces`` into the real
Collector, Jaeger and Prometheus.

- The issue's three forgeries (a second array spelled ``resource_spans``,
  ``service.name`` twice, ``stringValue`` beside ``string_value``) never reach the
  trace store as the gateway's spans, nor with a client id of the sender's choosing.
- A session id in a fetch span's URL is stored as ``{session_id}``.
- A flood of distinct span names, routes, peers and status codes adds at most the
  documented number of series (otel-collector/config.yaml: 16 x 101 span-metric
  series for chat-web, the page being one instance, and 4 x 32 service-graph
  series), and the real gateway -> chat edge and the gateway's span metrics keep
  counting.
"""

import copy
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.gateway.browser_spans import MAX_CLIENT_SPANS, OTHER
from services.gateway.settings import DEMO_API_KEY
from stack.backends import Backends
from stack.native import NativeStack
from stack.processes import wait_until
from tests.e2e.conftest import Traffic
from traces.otlp_json import StoredSpan, flatten

OTLP = "/otlp/v1/traces"
CLIENT_ID = "demo-client"  # the demo key's client (services/gateway/settings.py)
INTERNAL, CLIENT = 1, 3

# The bound the Collector config documents: label sets per instance (the cardinality
# limit and the overflow set) x Prometheus series per label set (calls, 13 buckets, sum,
# count); the service graph: 4 label sets x (2 counters + 2 x 15 histogram series).
SPAN_METRIC_SERIES = 16 * (100 + 1)
SERVICE_GRAPH_SERIES = 4 * 32


@pytest.fixture(scope="module")
def gateway(stack: NativeStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{stack.ports.entry}",
        headers={"X-API-Key": DEMO_API_KEY},
        timeout=10,
    ) as client:
        yield client


def span(trace_id: str, name: str, kind: int, **attributes: Any) -> dict[str, Any]:
    now = time.time_ns()
    return {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(now - 2_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [{"key": k, "value": _value(v)} for k, v in attributes.items()],
    }


def _value(value: Any) -> dict[str, Any]:
    return {"intValue": value} if isinstance(value, int) else {"stringValue": value}


def export(*spans: dict[str, Any], service: str = "chat-web") -> dict[str, Any]:
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "client.id", "value": {"stringValue": "someone-else"}},
        ]
    }
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}


def relay(gateway: httpx.Client, body: dict[str, Any] | str, injected: list[int]) -> int:
    """POST an export to the relay; returns the status. What the relay took is counted
    among the spans no SDK sent (test_nothing_lost compares the rest)."""
    content = body if isinstance(body, str) else json.dumps(body)
    response = gateway.post(OTLP, content=content, headers={"Content-Type": "application/json"})
    if response.status_code == 200:
        sent = json.loads(content)["resourceSpans"]
        injected.append(sum(len(s["spans"]) for rs in sent for s in rs["scopeSpans"]))
    return response.status_code


def stored(backends: Backends, trace_id: str) -> list[StoredSpan]:
    return wait_until(
        lambda: flatten(backends.trace(trace_id)) or None, timeout=60, what=f"trace {trace_id}"
    )


# --- the forgeries -------------------------------------------------------------


def _second_array(body: dict[str, Any]) -> str:
    smuggled = copy.deepcopy(body["resourceSpans"][0])
    smuggled["resource"]["attributes"][0]["value"]["stringValue"] = "gateway"
    return json.dumps({"resourceSpans": [], "resource_spans": [smuggled]})


def _service_twice(body: dict[str, Any]) -> str:
    attributes = body["resourceSpans"][0]["resource"]["attributes"]
    attributes.insert(0, {"key": "service.name", "value": {"stringValue": "gateway"}})
    return json.dumps(body)


def _both_spellings(body: dict[str, Any]) -> str:
    value = body["resourceSpans"][0]["resource"]["attributes"][0]["value"]
    value["string_value"] = "gateway"
    return json.dumps(body)


@pytest.mark.parametrize(
    ("forge", "status"),
    [(_second_array, 400), (_service_twice, 200), (_both_spellings, 400)],
    ids=["second array resource_spans", "service.name twice", "stringValue and string_value"],
)
def test_a_forged_resource_never_reaches_jaeger_as_another_service(
    gateway: httpx.Client,
    backends: Backends,
    injected_spans: list[int],
    forge: Any,
    status: int,
) -> None:
    trace_id = uuid.uuid4().hex
    assert (
        relay(gateway, forge(export(span(trace_id, "GET /chat", INTERNAL))), injected_spans)
        == status
    )
    # A later export of the page's is stored: so would the forged one have been by now.
    marker = uuid.uuid4().hex
    assert relay(gateway, export(span(marker, "click", INTERNAL)), injected_spans) == 200
    stored(backends, marker)
    arrived = flatten(backends.trace(trace_id))
    assert all(s.service == "chat-web" for s in arrived), arrived
    assert all(s.resource["client.id"] == CLIENT_ID for s in arrived), arrived
    assert [s.name for s in arrived] == ([OTHER] if status == 200 else [])


def test_a_session_id_in_a_url_is_stored_as_a_template(
    gateway: httpx.Client, backends: Backends, traffic: Traffic, injected_spans: list[int]
) -> None:
    session = traffic.responses[0]["session_id"]
    trace_id = uuid.uuid4().hex
    url = f"http://127.0.0.1/chat/{session}/history?session={session}"
    fetch = span(trace_id, "GET", CLIENT, **{"url.full": url, "http.request.method": "GET"})
    assert relay(gateway, export(fetch), injected_spans) == 200
    [stored_span] = stored(backends, trace_id)
    assert stored_span.attributes["url.full"] == "http://127.0.0.1/chat/{session_id}/history"
    assert session not in str(backends.trace(trace_id))


# --- the flood -------------------------------------------------------------------------


def _series(backends: Backends, selector: str) -> int:
    return int(backends.scalar(f"count({selector}) or vector(0)"))


def _edge_requests(backends: Backends, client: str, server: str) -> float:
    query = f'sum(traces_service_graph_request_total{{client="{client}", server="{server}"}})'
    return backends.scalar(f"{query} or vector(0)")


CHAT_WEB_SPAN_METRICS = '{__name__=~"traces_span_metrics_.+", service_name="chat-web"}'
CHAT_WEB_EDGES = '{__name__=~"traces_service_graph_.+", client="chat-web"}'
GATEWAY_CALLS = 'sum(traces_span_metrics_calls_total{service_name="gateway"})'


def test_a_flood_of_distinct_names_routes_and_peers_adds_a_bounded_number_of_series(
    gateway: httpx.Client, backends: Backends, traffic: Traffic, injected_spans: list[int]
) -> None:
    # The real edges and the gateway's span metrics exist before the flood.
    wait_until(
        lambda: _edge_requests(backends, "gateway", "chat") or None, timeout=60, what="the edge"
    )
    edges_before = _series(backends, CHAT_WEB_EDGES)

    # 300 spans, each its own name, route, peer, server address, database and status
    # code: within the relay's caps per export, so it takes a few exports.
    flood = [
        span(
            uuid.uuid4().hex,
            f"GET /product/{i}",
            CLIENT if i % 10 == 0 else INTERNAL,
            **{
                "http.route": f"/product/{i}",
                "peer.service": f"peer-{i}",
                "server.address": f"host-{i}.example",
                "db.system.name": f"db-{i}",
                "http.response.status_code": 100 + i,
            },
        )
        for i in range(300)
    ]
    assert sum(s["kind"] == CLIENT for s in flood[:100]) <= MAX_CLIENT_SPANS
    assert relay(gateway, export(*flood), injected_spans) == 400  # over the caps at once
    for start in range(0, 300, 100):
        assert relay(gateway, export(*flood[start : start + 100]), injected_spans) == 200

    # The connectors have seen all of it once the overflow label set is in Prometheus
    # and the count of chat-web's series stops moving.
    overflow = (
        'traces_span_metrics_calls_total{service_name="chat-web", otel_metric_overflow="true"}'
    )
    wait_until(lambda: backends.promql(overflow) or None, timeout=90, what="the overflow series")
    counts: list[int] = []

    def settled() -> int | None:
        counts.append(_series(backends, CHAT_WEB_SPAN_METRICS))
        return counts[-1] if len(counts) > 3 and len(set(counts[-4:])) == 1 else None

    span_metric_series = wait_until(
        settled, timeout=90, what="chat-web's series to settle", interval=2
    )
    assert span_metric_series <= SPAN_METRIC_SERIES
    edge_series = _series(backends, CHAT_WEB_EDGES)
    assert edge_series - edges_before <= SERVICE_GRAPH_SERIES
    # Nothing the flood named became a label: no route, peer, name or database.
    for label in ("http_route", "server", "span_name"):
        named = backends.promql(
            f'count by ({label}) ({{{label}=~"(/product/|peer-|host-|db-|GET /product/).*"}})'
        )
        assert named == [], named

    # Real traffic still counts: new chats show in the gateway -> chat edge and in the
    # gateway's own span metrics (its instance has a limit of its own).
    edge_before, calls_before = (
        _edge_requests(backends, "gateway", "chat"),
        backends.scalar(GATEWAY_CALLS),
    )
    for i in range(3):
        assert gateway.post("/chat", json={"message": f"after the flood {i}"}).status_code == 200
    wait_until(
        lambda: _edge_requests(backends, "gateway", "chat") >= edge_before + 3 or None,
        timeout=90,
        what="the gateway -> chat edge to count the new chats",
    )
    wait_until(
        lambda: backends.scalar(GATEWAY_CALLS) > calls_before or None,
        timeout=60,
        what="the gateway's span metrics to count the new chats",
    )
