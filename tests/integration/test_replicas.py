"""Replicas, as real processes: chat x3 and cache x2 behind one gateway, each
caller taking its callee's replicas in turn (services/common/balancing.py).

What each replica served is read from its own spans: every process has its own
``service.instance.id``, and the caller's client span names the address it called.
"""

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import registry
from services.gateway.settings import DEMO_API_KEY
from stack.processes import free_port, wait_until
from tests.conftest import RedisServers
from tests.integration.conftest import Stack, chain, service_process
from tests.support.otlp import ReceivedSpan, otlp_receiver

REPLICAS = {"chat": 3, "cache": 2}
SERVER = 2  # SpanKind.SERVER in OTLP
CLIENT = 3
REQUESTS = 24
KEY = {"X-API-Key": DEMO_API_KEY}


@pytest.fixture(scope="module")
def scaled(redis_servers: RedisServers, log_dir: Path) -> Iterator[Stack]:
    quick = {"CHAT_THINKING_BASE_MS": "5", "CHAT_THINKING_PER_CHAR_MS": "0"}
    with (
        otlp_receiver() as receiver,
        chain(receiver, redis_servers, log_dir, quick, cache_workers=1, replicas=REPLICAS) as stack,
    ):
        yield stack


def _chats(url: str, count: int) -> list[httpx.Response]:
    with httpx.Client(base_url=url, headers=KEY, timeout=10) as client:
        return [
            client.post("/chat", json={"message": f"which replica? {uuid.uuid4().hex[:8]}"})
            for _ in range(count)
        ]


def _served(stack: Stack, trace_ids: set[str], service: str) -> Counter[str]:
    """Server spans of ``service`` in these traces, by service.instance.id."""
    return Counter(
        str(span.resource["service.instance.id"])
        for span in _spans(stack, trace_ids)
        if span.service == service and span.kind == SERVER
    )


def _spans(stack: Stack, trace_ids: set[str]) -> list[ReceivedSpan]:
    return [span for trace_id in trace_ids for span in stack.receiver.spans_of(trace_id)]


def test_every_replica_serves_its_share(scaled: Stack) -> None:
    responses = _chats(scaled.url(registry.ENTRY.name), REQUESTS)
    assert [r.status_code for r in responses] == [200] * REQUESTS
    trace_ids = {r.json()["trace_id"] for r in responses}

    def every_chat_span_arrived() -> Counter[str] | None:
        served = _served(scaled, trace_ids, "chat")
        return served if sum(served.values()) == REQUESTS else None

    chats = wait_until(every_chat_span_arrived, timeout=30, what="a chat span per request")
    # One gateway taking three chats in turn: a third each, exactly.
    assert sorted(chats.values()) == [REQUESTS // 3] * 3, chats

    def every_cache_replica() -> Counter[str] | None:
        served = _served(scaled, trace_ids, "cache")
        return served if len(served) == REPLICAS["cache"] else None

    caches = wait_until(every_cache_replica, timeout=30, what="spans of both cache replicas")
    # Three chats each taking both caches in turn, from where each one's turn started.
    fair = sum(caches.values()) / REPLICAS["cache"]
    assert min(caches.values()) >= fair * 0.6, caches

    # Each client span names the replica it called: its own port, not a shared name.
    called = {
        (span.service, int(str(span.attributes["server.port"])))
        for span in _spans(scaled, trace_ids)
        if span.kind == CLIENT and "http.request.method" in span.attributes  # not Redis
    }
    assert {port for service, port in called if service == "gateway"} == set(
        scaled.replicas["chat"]
    )
    assert {port for service, port in called if service == "chat"} == set(scaled.replicas["cache"])


def test_a_replica_that_refuses_connections_costs_at_most_one_call(
    scaled: Stack, log_dir: Path
) -> None:
    """A gateway whose chat list names a fourth replica that is gone (nothing listens
    on its port): the first call that picks it fails (a POST is not retried), then
    the gone one is left out until the next resolution (a minute here)."""
    gone = free_port()
    chats = [*scaled.replicas["chat"], gone]
    env = {
        "OTEL_SDK_DISABLED": "true",
        "GATEWAY_CHAT_URL": ",".join(f"http://127.0.0.1:{port}" for port in chats),
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # rate limits: fail open
        "GATEWAY_RESOLVE_TTL_SECONDS": "60",
    }
    port = free_port()
    with service_process("gateway", port, log_dir, env):
        responses = _chats(f"http://127.0.0.1:{port}", 12)
    statuses = Counter(r.status_code for r in responses)
    failed = [r.json()["detail"] for r in responses if r.status_code != 200]
    assert statuses[200] >= 11, statuses
    assert failed in ([], ["chat: unreachable."]), failed
