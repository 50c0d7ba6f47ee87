"""The cache service after Redis went away and came back: nothing written before is
lost, and no request fails on a connection that led to the Redis that is gone."""

import asyncio
from contextlib import ExitStack
from pathlib import Path

import httpx

from services.registry import redis_url_as
from stack.processes import free_port, redis_ping
from stack.redis_servers import password_environment, redis_command
from tests.integration.conftest import service_process
from tests.support.processes import running

CONCURRENT = 8  # enough requests at once for the pool to hold that many connections


async def _appends(cache: str, key: str, count: int = CONCURRENT) -> list[int]:
    async with httpx.AsyncClient(base_url=cache, timeout=5) as client:
        responses = await asyncio.gather(
            *(client.post(f"/lists/{key}-{n}", json={"value": "turn"}) for n in range(count))
        )
    return [response.status_code for response in responses]


def test_after_a_restart_every_write_is_there_and_no_pooled_connection_is_stale(
    log_dir: Path,
) -> None:
    """SIGTERM Redis under the cache, start it again on the same data.

    Every append made before is there: an append is a Lua script, which the
    append-only file keeps as a transaction, and a Redis that replays transactions
    with a restricted ``default`` user drops them all at a restart
    (deploy/redis/generate_acl.py). And every append after succeeds: a dead pooled
    connection would fail one, and the turn would go unsaved (chat does not retry a
    failure the cache relays from Redis)."""
    redis_port, cache_port = free_port(), free_port()
    command = redis_command(redis_port, log_dir / f"redis-restart-{redis_port}")
    env = {
        "CACHE_REDIS_URL": redis_url_as("cache", f"redis://127.0.0.1:{redis_port}/0"),
        **password_environment(),
        "OTEL_SDK_DISABLED": "true",
    }
    cache = f"http://127.0.0.1:{cache_port}"
    with ExitStack() as first_redis, ExitStack() as cache_process:
        first_redis.enter_context(
            running("redis-a", command, ready=redis_ping(redis_port), log_dir=log_dir)
        )
        cache_process.enter_context(service_process("cache", cache_port, log_dir, env))
        assert asyncio.run(_appends(cache, "before")) == [200] * CONCURRENT
        first_redis.close()  # SIGTERM: Redis flushes its append-only file on the way out
        # Redis is gone: one request sees it (on one of the pooled connections).
        assert asyncio.run(_appends(cache, "while-away", count=1)) == [503]
        with running("redis-b", command, ready=redis_ping(redis_port), log_dir=log_dir):
            assert asyncio.run(_appends(cache, "after")) == [200] * CONCURRENT
            kept = [httpx.get(f"{cache}/lists/before-{n}", timeout=5) for n in range(CONCURRENT)]
    assert [r.status_code for r in kept] == [200] * CONCURRENT
    assert all(r.json()["values"] == ["turn"] for r in kept)
