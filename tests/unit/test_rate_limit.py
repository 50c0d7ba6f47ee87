"""The gateway's rate limit, end to end (the bucket itself: test_logic.py)."""

import pytest

from services.gateway.settings import GatewaySettings
from tests.unit.conftest import Chain


@pytest.fixture
def gateway_settings(redis_url: str) -> GatewaySettings:
    return GatewaySettings(redis_url=redis_url, rate_limit_per_minute=3)


async def test_over_the_rate_limit_is_429_with_retry_after(chain: Chain) -> None:
    statuses = [(await chain.chat(f"message {i}")).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = await chain.chat("one more")
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
