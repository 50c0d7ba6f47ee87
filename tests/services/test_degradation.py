"""Failures keep their meaning across hops, degrade where they can, and never
outlast the request's budget."""

import time

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from services.cache.main import create_app as create_cache
from services.cache.settings import CacheSettings
from services.chat.settings import ChatSettings
from services.common.faults import Fault
from services.common.problems import not_there_is_an_answer
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from services.telemetry import configure_telemetry
from stack.processes import free_port
from tests.services.conftest import Chain, InMemoryTelemetry, attrs

KEY = {"X-API-Key": DEMO_API_KEY}


class TestRedisDown:
    @pytest.fixture
    def cache_settings(self) -> CacheSettings:
        return CacheSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    async def test_replies_go_on_uncached_and_say_nothing_was_saved(self, chain: Chain) -> None:
        response = await chain.chat("hello there")
        assert response.status_code == 200
        body = response.json()
        assert (body["cached"], body["degraded"], body["history_saved"]) == (False, True, False)
        assert body["reply"].startswith("Hello")

        chat_spans = chain.spans("chat")
        lookup = next(s for s in chat_spans if s.name == "chat.cache_lookup")
        assert lookup.status.status_code is StatusCode.ERROR
        assert any(e.name == "exception" for e in lookup.events)
        server = next(s for s in chat_spans if s.kind is SpanKind.SERVER)
        assert attrs(server)["chat.degraded"] is True
        assert set(attrs(server)["chat.degraded.reasons"]) == {
            "cache_unavailable",
            "history_unsaved",
        }
        degraded = chain.metric_points("chat")["chat.degraded"]
        assert {attrs(p)["chat.degraded.reason"] for p in degraded} == {
            "cache_unavailable",
            "history_unsaved",
        }
        # The failing hop is red: the cache's server spans, with Redis's exception.
        cache_servers = [s for s in chain.spans("cache") if s.kind is SpanKind.SERVER]
        assert cache_servers and all(
            s.status.status_code is StatusCode.ERROR for s in cache_servers
        )

    async def test_reads_name_every_hop_down_to_redis(self, chain: Chain) -> None:
        response = await chain.gateway.get(f"/chat/{'a' * 32}/history", headers=KEY)
        assert response.status_code == 503
        assert response.json()["detail"] == "chat: cache: Redis is unavailable."

    async def test_a_failure_relayed_from_below_is_not_retried(self, chain: Chain) -> None:
        await chain.chat("count my attempts")
        # The lookup (GET) once: the cache relays Redis's failure, and another
        # try would only reach the same Redis. No reply is stored after a failed
        # lookup; the history append (POST) once.
        assert _cache_calls(chain) == [("GET", "cache"), ("POST", "lists")]


def _cache_calls(chain: Chain) -> list[tuple[str, str]]:
    return [
        (attrs(s)["http.request.method"], attrs(s)["url.full"].split("/")[3])
        for s in chain.spans("chat")
        if s.kind is SpanKind.CLIENT
    ]


class TestCacheFailingItself:
    @pytest.fixture
    def cache_settings(self, redis_url: str) -> CacheSettings:
        down = Fault(error_rate=1.0, status=503)  # the cache's own 503, not Redis's
        return CacheSettings(redis_url=redis_url, faults={"self": down})

    async def test_a_hops_own_failure_is_retried_once_appends_too(self, chain: Chain) -> None:
        response = await chain.chat("count my attempts")
        assert response.json()["history_saved"] is False
        # Every call twice: the append too, since the cache stores a turn once
        # per id whatever number of times it is sent.
        assert _cache_calls(chain) == [("GET", "cache")] * 2 + [("POST", "lists")] * 2


class TestOutOfTime:
    @pytest.fixture
    def chat_settings(self) -> ChatSettings:
        return ChatSettings(thinking_base_ms=3_000)

    @pytest.fixture
    def gateway_settings(self, redis_url: str) -> GatewaySettings:
        return GatewaySettings(redis_url=redis_url, request_budget_seconds=0.5)

    async def test_the_hop_that_runs_out_answers_504_within_the_budget(self, chain: Chain) -> None:
        started = time.monotonic()
        response = await chain.chat("think about this for three seconds")
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert response.json()["detail"].startswith("chat: out of time (request budget 4")
        assert elapsed < 0.5 + 0.2
        chat_server = next(s for s in chain.spans("chat") if s.kind is SpanKind.SERVER)
        assert chat_server.status.status_code is StatusCode.ERROR


async def test_a_not_there_404_is_an_answer_and_a_wrong_url_is_an_error(redis_url: str) -> None:
    caller = InMemoryTelemetry()
    telemetry = configure_telemetry("caller", exporters=caller.outbound().exporters)
    cache = create_cache(CacheSettings(redis_url=redis_url), InMemoryTelemetry().outbound())
    transport = httpx.ASGITransport(app=cache)
    async with (
        cache.router.lifespan_context(cache),
        httpx.AsyncClient(transport=transport, base_url="http://cache") as client,
    ):
        # The hook every service client has (services/common/http_client.py).
        telemetry.instrument_http_client(client, response_hook=not_there_is_an_answer)
        missing = await client.get("/cache/never-stored")
        wrong = await client.get("/no/such/route")
    telemetry.shutdown()
    assert (missing.status_code, wrong.status_code) == (404, 404)
    spans = {attrs(s)["url.full"].split("cache")[-1]: s for s in caller.spans.get_finished_spans()}
    assert spans["/never-stored"].status.status_code is StatusCode.OK
    assert spans["/no/such/route"].status.status_code is StatusCode.ERROR
