"""The gateway's rate limits, end to end in one process (the bucket itself:
test_logic.py; on real processes, under a flood: tests/integration/test_edge.py)."""

import pytest
from opentelemetry.trace import SpanKind

from services.gateway.rate_limit import address_key
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from tests.services.conftest import Chain, attrs

OTHER_KEY = "other-key"


@pytest.fixture
def gateway_settings(redis_url: str) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_url,
        rate_limit_per_minute=3,
        auth_failures_per_minute=2,
        api_keys={DEMO_API_KEY: "demo-client", OTHER_KEY: "other-client"},
    )


async def test_over_the_rate_limit_is_429_with_retry_after(chain: Chain) -> None:
    statuses = [(await chain.chat(f"message {i}")).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = await chain.chat("one more")
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


async def test_past_the_failure_budget_only_clients_known_at_the_address_are_served(
    chain: Chain,
) -> None:
    """rate_limit.py's table, row by row (every request here is from 127.0.0.1)."""

    async def send(key: str | None) -> int:
        headers = {"X-API-Key": key} if key else {}
        response = await chain.gateway.post("/chat", json={"message": "hi"}, headers=headers)
        return response.status_code

    assert await send(DEMO_API_KEY) == 200  # within the budget: now known here
    assert [await send("wrong"), await send(None)] == [401, 401]  # counted
    assert [await send("wrong"), await send(None)] == [429, 429]  # past the budget
    assert await send(DEMO_API_KEY) == 200  # known here: served
    assert await send(OTHER_KEY) == 429  # right, but new here: as a wrong key


async def test_a_known_clients_request_costs_three_redis_commands(chain: Chain) -> None:
    """As many as before failures were throttled per guess (then: a check of the
    address's failures, the count, the quota; now: known there?, the count, the
    quota), and the first two at once (rate_limit.py)."""
    assert (await chain.chat("first: the client becomes known here")).status_code == 200
    chain.telemetry["gateway"].spans.clear()
    assert (await chain.chat("second")).status_code == 200
    spans = chain.spans("gateway")
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    redis = [s for s in spans if attrs(s).get("db.system.name") == "redis"]
    assert len(redis) == 3, [s.name for s in redis]
    assert all(s.parent and s.parent.span_id == server.context.span_id for s in redis)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # the same /64: one budget
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:198.51.100.1", "198.51.100.1"),  # IPv4-mapped: the IPv4 address
        ("::1", "::/64"),
        (None, "unknown"),  # no peer address (a Unix socket)
        ("not an address", "unknown"),
    ],
)
def test_failures_count_per_ipv4_address_and_ipv6_64(host: str | None, key: str) -> None:
    assert address_key(host) == key
