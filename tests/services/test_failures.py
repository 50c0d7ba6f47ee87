"""Failures of Redis or a downstream service: a problem+json 5xx and red spans."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
from opentelemetry.trace import SpanKind, StatusCode

from services.cache.main import create_app as create_cache
from services.cache.settings import CacheSettings
from services.gateway.main import create_app as create_gateway
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from stack.processes import free_port
from tests.services.conftest import Chain, InMemoryTelemetry, attrs


async def test_redis_down_is_a_503_with_the_cause_in_the_trace(chain: Chain) -> None:
    cache = InMemoryTelemetry()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create_cache(CacheSettings(redis_url=dead_redis), cache.outbound())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cache"
        ) as client,
    ):
        response = await client.get("/cache/some-key")
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "Redis is unavailable."
    assert ready.status_code == 503

    spans = cache.spans.get_finished_spans()
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    redis = next(s for s in spans if attrs(s).get("db.system.name") == "redis")
    assert server.status.status_code is StatusCode.ERROR
    assert redis.status.status_code is StatusCode.ERROR
    assert redis.parent is not None and redis.parent.span_id == server.context.span_id
    assert any(event.name == "exception" for event in redis.events)


async def _gateway_alone(
    settings: GatewaySettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemoryTelemetry]]:
    telemetry = InMemoryTelemetry()
    app = create_gateway(settings, telemetry.outbound())
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
        )
        yield client, telemetry


async def test_chat_unreachable_is_a_503_and_an_error_span() -> None:
    settings = GatewaySettings(chat_url=f"http://127.0.0.1:{free_port()}")
    async for client, telemetry in _gateway_alone(settings):
        response = await client.post(
            "/chat", json={"message": "hi"}, headers={"X-API-Key": DEMO_API_KEY}
        )
        ready = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["detail"] == "chat: unreachable."
        assert ready.status_code == 503
        spans = telemetry.spans.get_finished_spans()
        server = next(s for s in spans if s.kind is SpanKind.SERVER)
        client_span = next(s for s in spans if s.kind is SpanKind.CLIENT)
        assert server.status.status_code is StatusCode.ERROR
        assert client_span.status.status_code is StatusCode.ERROR
        assert any(event.name == "exception" for event in server.events)
        points = telemetry.metrics.get_metrics_data()
        assert points is not None
        outcomes = [
            attrs(p)
            for rm in points.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "chat.requests"
            for p in m.data.data_points
        ]
        assert outcomes == [{"chat.outcome": "error"}]
