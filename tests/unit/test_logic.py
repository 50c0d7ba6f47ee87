"""Pure logic: the assistant and the rate limiter."""

import pytest

from services.chat.assistant import (
    compose_reply,
    normalize,
    reply_cache_key,
    thinking_delay_seconds,
)
from services.common.problems import ProblemError
from services.gateway.security import RateLimiter, client_for_key


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


def test_rate_limiter_refills_smoothly_per_client() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    limiter.check("alice")
    limiter.check("alice")
    with pytest.raises(ProblemError) as rejected:
        limiter.check("alice")
    assert rejected.value.status == 429
    assert rejected.value.headers["Retry-After"] == "30"
    limiter.check("bob")  # another client has its own bucket
    now[0] = 30.0  # half a minute: one token back
    limiter.check("alice")
    with pytest.raises(ProblemError, match="per minute"):
        limiter.check("alice")
