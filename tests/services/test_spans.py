"""One chat request, as every service's in-memory exporters saw it."""

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from services.telemetry import session_pseudonym
from tests.services.conftest import SERVICES, Chain, attrs

# Who makes the server spans, by the server_instrumentation setting.
SERVER_SCOPES = {"fastapi": "fastapi", "contrib": "opentelemetry.instrumentation.fastapi"}


@pytest.fixture(params=sorted(SERVER_SCOPES))
def server_instrumentation(request: pytest.FixtureRequest) -> str:
    """Every test here runs with either server instrumentation: one span shape."""
    value: str = request.param
    return value


async def test_the_setting_picks_the_server_instrumentation(
    chain: Chain, server_instrumentation: str
) -> None:
    response = await chain.chat("hello, who instruments you?")
    assert response.status_code == 200
    for service in SERVICES:
        servers = [s for s in chain.spans(service) if s.kind == SpanKind.SERVER]
        assert servers, service
        for span in servers:
            assert span.instrumentation_scope is not None
            assert span.instrumentation_scope.name == SERVER_SCOPES[server_instrumentation]
            assert attrs(span)["http.route"]
        # No internal ASGI send/receive spans from either.
        assert not [
            s for s in chain.spans(service) if s.kind == SpanKind.INTERNAL and "http" in s.name
        ]
        durations = chain.metric_points(service)["http.server.request.duration"]
        assert sum(point.count for point in durations) >= 1, service


def _by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = _by_name(spans, name)
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


async def test_a_chat_request_is_one_trace_across_every_service(chain: Chain) -> None:
    response = await chain.chat("hello there")
    assert response.status_code == 200, response.text
    trace_id = response.json()["trace_id"]
    assert response.headers["x-trace-id"] == trace_id
    assert response.headers["traceresponse"].startswith(f"00-{trace_id}-")

    spans = chain.all_spans()
    assert {format_trace_id(span.context.trace_id) for _, span in spans} == {trace_id}
    assert {service for service, _ in spans} == set(SERVICES)

    gateway_server = _one(chain.spans("gateway"), "POST /chat")
    assert gateway_server.kind is SpanKind.SERVER
    assert gateway_server.parent is None
    assert response.headers["traceresponse"] == (
        f"00-{trace_id}-{format_span_id(gateway_server.context.span_id)}-"
        f"{gateway_server.context.trace_flags:02x}"
    )
    gateway_client = _one(chain.spans("gateway"), "POST")
    assert gateway_client.kind is SpanKind.CLIENT
    assert gateway_client.parent is not None
    assert gateway_client.parent.span_id == gateway_server.context.span_id

    # Each server span's parent is its caller's client span.
    chat_server = _one(chain.spans("chat"), "POST /replies")
    assert chat_server.parent is not None
    assert chat_server.parent.span_id == gateway_client.context.span_id
    chat_clients = [s for s in chain.spans("chat") if s.kind is SpanKind.CLIENT]
    cache_servers = [s for s in chain.spans("cache") if s.kind is SpanKind.SERVER]
    assert len(cache_servers) == len(chat_clients) == 3  # lookup, store reply, append turn
    client_ids = {s.context.span_id for s in chat_clients}
    assert {s.parent.span_id for s in cache_servers if s.parent} == client_ids
    assert {s.name for s in cache_servers} == {
        "GET /cache/{key}",
        "PUT /cache/{key}",
        "POST /lists/{key}",
    }

    # Redis commands are client spans under the cache service's server spans.
    redis_spans = [s for s in chain.spans("cache") if attrs(s).get("db.system.name") == "redis"]
    assert redis_spans, [s.name for s in chain.spans("cache")]
    server_ids = {s.context.span_id for s in cache_servers}
    for span in redis_spans:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id in server_ids


async def test_business_spans_say_what_happened(chain: Chain) -> None:
    first = await chain.chat("tell me about metrics")
    second = await chain.chat("Tell me   about METRICS")  # same message, normalised
    assert first.json()["cached"] is False
    assert second.json()["cached"] is True

    lookups = _by_name(chain.spans("chat"), "chat.cache_lookup")
    assert [attrs(span)["cache.hit"] for span in lookups] == [False, True]
    generate = _one(chain.spans("chat"), "chat.generate_reply")  # only for the miss
    assert attrs(generate)["chat.message.length"] == len("tell me about metrics")
    assert float(attrs(generate)["chat.thinking.ms"]) > 0

    cache_gets = _by_name(chain.spans("cache"), "GET /cache/{key}")
    assert [attrs(span)["cache.hit"] for span in cache_gets] == [False, True]
    # A cache miss is an answer, not an error: nothing in a good request is red.
    assert all(span.status.status_code is not StatusCode.ERROR for _, span in chain.all_spans())

    replies = _by_name(chain.spans("chat"), "POST /replies")
    # The session's pseudonym: its id is a credential (services/telemetry/_pseudonyms.py).
    pseudonym = session_pseudonym(first.json()["session_id"])
    assert all(attrs(span)["session.id"] == pseudonym for span in replies[:1])


async def test_baggage_from_the_gateway_labels_downstream_spans(chain: Chain) -> None:
    await chain.chat("hi")
    assert attrs(_one(chain.spans("gateway"), "POST /chat"))["client.id"] == "demo-client"
    for service in SERVICES[1:]:  # downstream of the entry point
        spans = chain.spans(service)
        assert spans
        assert {attrs(span).get("client.id") for span in spans} == {"demo-client"}


async def test_resource_identifies_each_service(chain: Chain) -> None:
    await chain.chat("hi")
    for service in SERVICES:
        resource = chain.spans(service)[0].resource.attributes
        assert resource["service.name"] == service
        assert resource["service.namespace"] == "otel-chat-demo"
        assert resource["service.version"] == "0.1.0"
        assert resource["deployment.environment.name"]
        assert resource["service.instance.id"]


async def test_health_probes_the_api_docs_and_the_page_are_not_traced(chain: Chain) -> None:
    """Either server instrumentation leaves out the same paths and prefixes (the
    contrib one once knew only the health and docs paths)."""
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/", "/page-config"):
        assert (await chain.gateway.get(path)).status_code == 200, path
    assert (await chain.gateway.get("/assets/chat.js")).status_code == 200
    assert (await chain.gateway.get("/docs/assets/swagger-ui.css")).status_code == 200
    relayed = await chain.gateway.post(
        "/otlp/v1/traces", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert relayed.status_code == 401  # no key: refused, and still no span
    assert chain.all_spans() == []
