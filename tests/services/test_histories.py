"""Sessions and their histories: read a page at a time, bounded in turns, in
sessions per client and in idle time, and written once per turn id."""

from typing import Any

import httpx
import pytest

from experiments import traffic
from services.cache.lists import IDS_PREFIX, LIST_PREFIX
from services.chat.settings import ChatSettings
from services.common.models import ChatTurn
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from stack.processes import wait_until
from tests.services.conftest import Chain

KEY = {"X-API-Key": DEMO_API_KEY}
OTHER = {"X-API-Key": "other-key"}
MAX_TURNS = 3
MAX_SESSIONS = 2


@pytest.fixture
def chat_settings() -> ChatSettings:
    return ChatSettings(
        thinking_base_ms=0,
        thinking_per_char_ms=0,
        max_turns_per_session=MAX_TURNS,
        max_sessions_per_client=MAX_SESSIONS,
    )


@pytest.fixture
def gateway_settings(redis_url: str) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_url, api_keys={DEMO_API_KEY: "demo-client", "other-key": "other"}
    )


async def _chat(
    chain: Chain, message: str, headers: dict[str, str] = KEY, **body: str
) -> dict[str, Any]:
    response = await chain.gateway.post("/chat", json={"message": message, **body}, headers=headers)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def _history(
    chain: Chain, session_id: str, headers: dict[str, str] = KEY, **params: str | int
) -> httpx.Response:
    return await chain.gateway.get(f"/chat/{session_id}/history", params=params, headers=headers)


async def _all_turns(chain: Chain, session_id: str, limit: int) -> list[str]:
    """Every message of a session, following the cursors page by page."""
    messages: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = (await _history(chain, session_id, KEY, **params)).json()
        assert len(page["turns"]) <= limit
        messages += [turn["message"] for turn in page["turns"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return messages


async def test_a_history_is_read_a_page_at_a_time(chain: Chain) -> None:
    session_id = (await _chat(chain, "one"))["session_id"]
    for message in ("two", "three"):
        await _chat(chain, message, session_id=session_id)
    first = (await _history(chain, session_id, limit=2)).json()
    assert [t["message"] for t in first["turns"]] == ["one", "two"]
    assert first["trimmed"] == 0
    last = (await _history(chain, session_id, limit=2, cursor=first["next_cursor"])).json()
    assert [t["message"] for t in last["turns"]] == ["three"]
    assert last["next_cursor"] is None
    everything = (await _history(chain, session_id)).json()  # the default limit
    assert len(everything["turns"]) == 3 and everything["next_cursor"] is None
    assert await _all_turns(chain, session_id, limit=1) == ["one", "two", "three"]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"cursor": "-1"}, {"cursor": "x"}]
)
async def test_out_of_bounds_pages_are_422(chain: Chain, params: dict[str, Any]) -> None:
    response = await _history(chain, "0" * 32, **params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_full_history_drops_its_oldest_turns_and_says_so(chain: Chain) -> None:
    first = await _chat(chain, "turn 1")
    session_id = first["session_id"]
    answers = [first] + [
        await _chat(chain, f"turn {n}", session_id=session_id) for n in range(2, 6)
    ]
    assert [a["history_saved"] for a in answers] == [True] * 5
    assert [a["history_trimmed"] for a in answers] == [0, 0, 0, 1, 2]
    page = (await _history(chain, session_id)).json()
    assert [t["message"] for t in page["turns"]] == ["turn 3", "turn 4", "turn 5"]
    assert page["trimmed"] == 2


async def test_a_cursor_neither_repeats_nor_skips_while_turns_are_dropped(chain: Chain) -> None:
    session_id = (await _chat(chain, "turn 1"))["session_id"]
    for n in (2, 3):
        await _chat(chain, f"turn {n}", session_id=session_id)
    first = (await _history(chain, session_id, limit=2)).json()
    assert [t["message"] for t in first["turns"]] == ["turn 1", "turn 2"]
    # Two more turns drop turns 1 and 2; the next page goes on after turn 2.
    for n in (4, 5):
        await _chat(chain, f"turn {n}", session_id=session_id)
    rest = (await _history(chain, session_id, limit=5, cursor=first["next_cursor"])).json()
    assert [t["message"] for t in rest["turns"]] == ["turn 3", "turn 4", "turn 5"]
    # Four more drop turns 3 to 6 too: a cursor from before starts at the oldest kept.
    for n in range(6, 10):
        await _chat(chain, f"turn {n}", session_id=session_id)
    late = (await _history(chain, session_id, cursor=first["next_cursor"])).json()
    assert [t["message"] for t in late["turns"]] == ["turn 7", "turn 8", "turn 9"]


async def test_a_retried_turn_is_stored_once_and_answered_the_same(chain: Chain) -> None:
    retried = KEY | {"Idempotency-Key": "turn-1"}
    first = await _chat(chain, "hello", retried)
    again = await _chat(chain, "hello", retried)
    assert again["session_id"] == first["session_id"]  # not a second session
    assert (again["reply"], again["turn_id"], again["history_saved"]) == (
        first["reply"],
        "turn-1",
        True,
    )
    session_id = first["session_id"]
    # In a session, and with the header's quoted form (the IETF draft's).
    for headers in (KEY | {"Idempotency-Key": "turn-2"}, KEY | {"Idempotency-Key": '"turn-2"'}):
        await _chat(chain, "logs?", headers, session_id=session_id)
    turns = (await _history(chain, session_id)).json()["turns"]
    assert [(t["message"], t["id"]) for t in turns] == [("hello", "turn-1"), ("logs?", "turn-2")]


async def test_a_key_used_again_for_another_message_is_422(chain: Chain) -> None:
    headers = KEY | {"Idempotency-Key": "reused"}
    session_id = (await _chat(chain, "hello", headers))["session_id"]
    response = await chain.gateway.post("/chat", json={"message": "bye"}, headers=headers)
    assert response.status_code == 422, response.text
    assert "another message" in response.json()["detail"]
    turns = (await _history(chain, session_id)).json()["turns"]
    assert [t["message"] for t in turns] == ["hello"]


@pytest.mark.parametrize(
    "key", ["", "x" * 65, "a b", "é".encode(), '"unclosed', "../x", "a:b", '""']
)
async def test_malformed_idempotency_keys_are_422_and_store_nothing(
    chain: Chain, key: str | bytes
) -> None:
    raw = key if isinstance(key, bytes) else key.encode()
    headers = {b"X-API-Key": DEMO_API_KEY.encode(), b"Idempotency-Key": raw}
    response = await chain.gateway.post("/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert chain.stored_keys() == []


async def test_a_client_over_its_session_cap_loses_its_least_recent_session(
    chain: Chain,
) -> None:
    others = (await _chat(chain, "mine", OTHER))["session_id"]
    oldest = (await _chat(chain, "first"))["session_id"]
    kept = (await _chat(chain, "second"))["session_id"]
    await _chat(chain, "again", session_id=oldest)  # now the most recent
    newest = (await _chat(chain, "third"))["session_id"]
    assert (await _history(chain, kept)).status_code == 404
    refused = await chain.gateway.post(
        "/chat", json={"message": "hi", "session_id": kept}, headers=KEY
    )
    assert refused.status_code == 404
    assert refused.json()["detail"] == f"Unknown session '{kept}'."
    for session_id in (oldest, newest):
        assert (await _history(chain, session_id)).status_code == 200
    assert (await _history(chain, others, OTHER)).status_code == 200  # another client's
    histories = [k for k in chain.stored_keys() if k.startswith(f"{LIST_PREFIX}history:demo")]
    assert len(histories) == MAX_SESSIONS


class TestIdleSessions:
    @pytest.fixture
    def chat_settings(self) -> ChatSettings:
        return ChatSettings(thinking_base_ms=0, thinking_per_char_ms=0, session_idle_seconds=2)

    async def test_each_turn_renews_a_session_and_an_idle_one_expires(self, chain: Chain) -> None:
        session_id = (await _chat(chain, "hello"))["session_id"]
        key = f"{LIST_PREFIX}history:demo-client:{session_id}"
        ttl = chain.redis.pttl(key)
        assert 0 < ttl <= 2000
        wait_until(lambda: chain.redis.pttl(key) < ttl - 500 or None, timeout=5, what="TTL down")
        await _chat(chain, "still here", session_id=session_id)
        assert chain.redis.pttl(key) > ttl - 200  # renewed
        assert chain.redis.pttl(f"{IDS_PREFIX}history:demo-client:{session_id}") > 0
        wait_until(lambda: not chain.redis.exists(key) or None, timeout=10, what="expiry")
        assert (await _history(chain, session_id)).status_code == 404


async def test_a_full_redis_refuses_the_turn_and_says_so(chain: Chain) -> None:
    session_id = (await _chat(chain, "hello"))["session_id"]
    policy = str(chain.redis.config_get("maxmemory-policy")["maxmemory-policy"])
    limit = str(chain.redis.config_get("maxmemory")["maxmemory"])
    chain.redis.config_set("maxmemory-policy", "noeviction")
    chain.redis.config_set("maxmemory", 1)  # full: every write is refused
    try:
        answers = [
            await _chat(chain, "tell me about logs", session_id=session_id),
            await _chat(chain, "a new session"),
        ]
        # Reading works on a full Redis.
        turns = (await _history(chain, session_id)).json()["turns"]
    finally:
        chain.redis.config_set("maxmemory", limit)
        chain.redis.config_set("maxmemory-policy", policy)
    for answer in answers:
        assert (answer["degraded"], answer["history_saved"]) == (True, False)
    assert [t["message"] for t in turns] == ["hello"]
    assert (await _history(chain, answers[1]["session_id"])).status_code == 404


async def test_a_history_from_before_turn_ids_reads_and_grows(chain: Chain) -> None:
    session_id = "ab" * 16
    old = ChatTurn(message="old", reply="r", cached=False, at="2026-01-01T00:00:00Z")
    chain.redis.rpush(f"{LIST_PREFIX}history:demo-client:{session_id}", old.model_dump_json())
    await _chat(chain, "new", session_id=session_id)
    page = (await _history(chain, session_id, limit=1)).json()
    assert [(t["message"], t["id"]) for t in page["turns"]] == [("old", None)]
    rest = (await _history(chain, session_id, cursor=page["next_cursor"])).json()
    assert [t["message"] for t in rest["turns"]] == ["new"]


async def test_the_drills_read_back_every_page(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(traffic, "HISTORY_PAGE", 1)  # a page per turn
    session_id = (await _chat(chain, "one"))["session_id"]
    second = await _chat(chain, "two", session_id=session_id)
    chain.gateway.headers.update(KEY)
    stored = await traffic.stored_history(chain.gateway, session_id, retry_for=0)
    assert [message for message, _ in stored] == ["one", "two"]
    assert stored[1][1] == second["reply"]


async def test_a_browser_on_an_allowed_origin_may_send_an_idempotency_key(chain: Chain) -> None:
    preflight = await chain.gateway.options(
        "/chat",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "idempotency-key" in allowed
