"""Histories on real processes, attacked as a client would: answers lost after
the turn was stored, then retried; a flood of new sessions from one key; pages
asked for far past their bound; and a failing Redis, which must cost one cache
call per hop, not one per retry of every hop.

Chat calls the cache through a proxy (tests/support/proxy.py) that can lose or
delay an answer after the cache has carried the request out.
"""

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from redis import Redis

from services import registry
from stack.processes import free_port, redis_ping, wait_until
from stack.redis_servers import admin_url, password_environment, redis_command
from tests.conftest import RedisServers
from tests.integration.conftest import FAST_EXPORT, service_process
from tests.support.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.support.processes import running
from tests.support.proxy import AnswerProxy
from traces.otlp_json import missing_parts

KEYS = {"key-alice": "alice", "key-bob": "bob"}
ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}
BUDGET = 1.5
MAX_SESSIONS = 5
MAX_TURNS = 150  # more than a page holds
APPEND = b"POST /lists/"


@dataclass
class Histories:
    urls: dict[str, str]  # each service's
    proxy: AnswerProxy
    receiver: OtlpReceiver
    redis: Redis
    redis_process: ExitStack  # closing it stops Redis


@pytest.fixture(scope="module")
def histories(log_dir: Path, redis_servers: RedisServers) -> Iterator[Histories]:
    """A Redis of the module's own (a test stops it), the cache behind the
    proxy, chat and a gateway with two clients and small caps."""
    redis_port = free_port()
    ports = {service: free_port() for service in registry.names()}
    with ExitStack() as stack:
        receiver = stack.enter_context(otlp_receiver())
        redis_process = stack.enter_context(ExitStack())
        command = redis_command(redis_port, log_dir / f"redis-histories-{redis_port}")
        ready = redis_ping(redis_port)
        redis_process.enter_context(
            running(f"redis-{redis_port}", command, ready=ready, log_dir=log_dir)
        )
        proxy = stack.enter_context(AnswerProxy(ports["cache"]).running())
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
        called = {
            **urls,
            "cache": proxy.url,
            registry.REDIS: redis_url,
            registry.REDIS_LIMITS: redis_servers.urls()[registry.REDIS_LIMITS],
        }
        env = {
            **FAST_EXPORT,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            **registry.dependency_environment(called),
            **password_environment(),
            "CHAT_THINKING_BASE_MS": "0",
            "CHAT_THINKING_PER_CHAR_MS": "0",
            "CHAT_MAX_SESSIONS_PER_CLIENT": str(MAX_SESSIONS),
            "CHAT_MAX_TURNS_PER_SESSION": str(MAX_TURNS),
            "GATEWAY_REQUEST_BUDGET_SECONDS": str(BUDGET),
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
            "GATEWAY_API_KEYS": json.dumps(KEYS),
        }
        for service in registry.start_order():
            port = ports[service.name]
            stack.enter_context(service_process(service.name, port, log_dir, env))
        redis = stack.enter_context(Redis.from_url(admin_url(redis_port), decode_responses=True))
        yield Histories(urls, proxy, receiver, redis, redis_process)


def _chat(
    histories: Histories, message: str, headers: dict[str, str], **body: str
) -> httpx.Response:
    return httpx.post(
        f"{histories.urls['gateway']}/chat",
        json={"message": message, **body},
        headers=headers,
        timeout=10,
    )


def _turns(histories: Histories, session_id: str, headers: dict[str, str]) -> list[str]:
    """Every message of the session, page after page."""
    messages: list[str] = []
    params: dict[str, str | int] = {"limit": 100}
    while True:
        response = httpx.get(
            f"{histories.urls['gateway']}/chat/{session_id}/history",
            params=params,
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        messages += [turn["message"] for turn in page["turns"]]
        if page["next_cursor"] is None:
            return messages
        params["cursor"] = page["next_cursor"]


# --- A turn is stored once, whatever was lost on the way back ----------------------------


def test_an_append_whose_answer_was_lost_is_retried_and_stored_once(
    histories: Histories,
) -> None:
    session_id = _chat(histories, "hello", ALICE).json()["session_id"]
    histories.proxy.lose_next_answer(APPEND)
    answer = _chat(histories, "tell me about logs", ALICE, session_id=session_id)
    assert histories.proxy.tripped.is_set()  # the cache stored it; chat never heard
    assert answer.status_code == 200, answer.text
    # Chat tried again (an append is idempotent now), and the cache knew the turn.
    assert answer.json()["history_saved"] is True
    assert _turns(histories, session_id, ALICE) == ["hello", "tell me about logs"]


def test_a_late_answer_then_a_client_retry_stores_the_turn_once(histories: Histories) -> None:
    # The first turn of a new session: its retry must find the session it made.
    retried = {**ALICE, "Idempotency-Key": str(uuid.uuid4())}
    message = f"hello {uuid.uuid4()}"
    histories.proxy.delay_next_answer(APPEND, BUDGET * 2)
    first = _chat(histories, message, retried)
    assert histories.proxy.tripped.is_set()
    # Out of time before the cache's answer came: not acknowledged, one way or another.
    assert first.status_code == 504 or first.json()["history_saved"] is False, first.text
    again = _chat(histories, message, retried)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["history_saved"] is True
    assert _turns(histories, body["session_id"], ALICE) == [message]
    # Alice's key from Bob is Bob's turn: ids belong to their client's sessions.
    bobs = _chat(histories, message, {**BOB, "Idempotency-Key": retried["Idempotency-Key"]})
    assert bobs.json()["session_id"] != body["session_id"]


# --- One key cannot fill Redis with sessions, or a response with turns ---------------------


def test_a_flood_of_new_sessions_keeps_a_client_within_its_cap(histories: Histories) -> None:
    bobs = _chat(histories, "bob was here", BOB).json()["session_id"]
    flood = [_chat(histories, f"flood {n}", ALICE).json() for n in range(3 * MAX_SESSIONS)]
    assert all(answer["history_saved"] for answer in flood)
    alices = [key for key in histories.redis.scan_iter("list:history:alice:*")]
    assert len(alices) == MAX_SESSIONS
    # The oldest are gone, cleanly: a 404 like any unknown session, never recreated.
    evicted = flood[0]["session_id"]
    for response in (
        httpx.get(f"{histories.urls['gateway']}/chat/{evicted}/history", headers=ALICE, timeout=10),
        _chat(histories, "still there?", ALICE, session_id=evicted),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == f"Unknown session '{evicted}'."
    assert not histories.redis.exists(f"list:history:alice:{evicted}")
    assert _turns(histories, flood[-1]["session_id"], ALICE) == [f"flood {3 * MAX_SESSIONS - 1}"]
    assert _turns(histories, bobs, BOB) == ["bob was here"]  # another key's are untouched
    # Nothing is left of the evicted sessions, and every key expires.
    for key in histories.redis.scan_iter("list*:*alice*"):
        assert histories.redis.ttl(key) > 0, key


def test_no_page_holds_more_than_its_bound(histories: Histories) -> None:
    session_id = _chat(histories, "turn 0", BOB).json()["session_id"]
    for n in range(1, MAX_TURNS + 10):
        answer = _chat(histories, f"turn {n}", BOB, session_id=session_id).json()
        assert answer["history_saved"] is True
    assert answer["history_trimmed"] == 10  # the history keeps its newest MAX_TURNS
    url = f"{histories.urls['gateway']}/chat/{session_id}/history"
    for limit in (101, 10_000, -1):
        refused = httpx.get(url, params={"limit": limit}, headers=BOB, timeout=10)
        assert refused.status_code == 422
    default = httpx.get(url, headers=BOB, timeout=10).json()
    assert len(default["turns"]) == 20 and default["trimmed"] == 10
    # Each hop bounds it, whoever calls it.
    chat = f"{histories.urls['chat']}/sessions/{session_id}/history"
    cache = f"{histories.urls['cache']}/lists/history:bob:{session_id}"
    for hop, params, headers in (
        (chat, {"limit": 101}, {"X-Client-Id": "bob"}),
        (cache, {"count": 1001}, {}),
    ):
        assert httpx.get(hop, params=params, headers=headers, timeout=10).status_code == 422
    turns = _turns(histories, session_id, BOB)
    assert turns == [f"turn {n}" for n in range(10, MAX_TURNS + 10)]


# --- Retries do not multiply: run last, it stops Redis -------------------------------------


def _complete_trace(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan]:
    def probe() -> list[ReceivedSpan] | None:
        spans = receiver.spans_of(trace_id)
        return spans if not missing_parts(spans) else None

    return wait_until(probe, timeout=15, what=f"the whole trace {trace_id}")


def _servers(spans: list[ReceivedSpan], service: str) -> int:
    return sum(1 for s in spans if s.service == service and s.kind == Span.SPAN_KIND_SERVER)


def test_a_failing_redis_costs_one_cache_call_per_request(histories: Histories) -> None:
    session_id = _chat(histories, "hello", ALICE).json()["session_id"]
    histories.redis_process.close()  # Redis is gone
    read = httpx.get(
        f"{histories.urls['gateway']}/chat/{session_id}/history", headers=ALICE, timeout=10
    )
    written = _chat(histories, f"hello {uuid.uuid4()}", ALICE)
    assert read.status_code == 503
    assert read.json()["detail"] == "chat: cache: Redis is unavailable."
    assert written.status_code == 200 and written.json()["history_saved"] is False
    expected: list[tuple[httpx.Response, dict[str, Any]]] = [
        (read, {"chat": 1, "cache": 1}),  # not 2 chat calls of 2 cache calls each
        (written, {"chat": 1, "cache": 2}),  # the lookup and the append, once each
    ]
    for response, servers in expected:
        spans = _complete_trace(histories.receiver, response.headers["x-trace-id"])
        assert {service: _servers(spans, service) for service in servers} == servers
