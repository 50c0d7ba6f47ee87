"""Pure logic: the assistant, API keys, outcomes, rate-limit headers."""

import pytest
from limits import RateLimitItemPerMinute

from services.chat.assistant import (
    compose_reply,
    normalize,
    reply_cache_key,
    thinking_delay_seconds,
)
from services.common.problems import ProblemError
from services.gateway.metrics import chat_outcome
from services.gateway.rate_limit import Quota
from services.gateway.security import client_for_key


def test_replies_are_deterministic_and_keyed_by_normalised_text() -> None:
    assert compose_reply("Hello") == compose_reply("hello") == compose_reply(" HELLO ")
    assert reply_cache_key("Hello  world") == reply_cache_key("hello world")
    assert reply_cache_key("hello") != reply_cache_key("help")
    assert normalize("  A   b ") == "a b"
    assert "trace" in compose_reply("what is a span?")
    assert compose_reply("one two three") == "You said 3 words; try asking about traces."


def test_thinking_grows_with_the_message_up_to_a_cap() -> None:
    def delay(message: str) -> float:
        return thinking_delay_seconds(message, base_ms=50, per_char_ms=1.0, max_ms=100)

    assert delay("ab") == pytest.approx(0.052)
    assert delay("a" * 20) > delay("a" * 10)
    assert delay("a" * 1000) == pytest.approx(0.1)


def test_api_keys_map_to_client_ids() -> None:
    keys = {"k1": "alice", "k2": "bob"}
    assert client_for_key("k2", keys) == "bob"
    for bad in (None, "", "k3", "k1 "):
        with pytest.raises(ProblemError) as rejected:
            client_for_key(bad, keys)
        assert rejected.value.status == 401


def test_every_status_has_an_outcome() -> None:
    expected = {
        200: "ok",
        400: "invalid",
        401: "unauthenticated",
        404: "not_found",
        405: "rejected",
        413: "too_large",
        422: "invalid",
        429: "rate_limited",
        500: "error",
        502: "error",
        504: "error",
    }
    assert {status: chat_outcome(status) for status in expected} == expected


def test_quota_headers_follow_the_ietf_draft() -> None:
    quota = Quota("per-client", RateLimitItemPerMinute(600), remaining=598, reset_seconds=7)
    assert quota.headers() == {
        "RateLimit-Policy": '"per-client";q=600;w=60',
        "RateLimit": '"per-client";r=598;t=7',
    }
