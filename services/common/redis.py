"""The one way a service opens Redis: async, with explicit timeouts, traced."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from services.telemetry import Telemetry


@asynccontextmanager
async def open_redis(
    url: str, *, password: str | None, timeout_seconds: float, telemetry: Telemetry
) -> AsyncIterator[Redis]:
    """A connection pool for the app's whole life; every command is a client span.

    ``url`` names the ACL user (``redis://cache@redis:6379/0``), ``password`` is its
    password (from a secret file: services.common.settings.RedisCredentials).
    Replies are decoded to ``str``. The same timeout bounds connecting and each
    command: a Redis on the same network answers in well under a millisecond,
    and past the timeout failing fast beats piling requests up behind it.
    """
    client = Redis.from_url(
        url,
        password=password,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
    )
    telemetry.instrument_redis(client)
    try:
        yield client
    finally:
        await client.aclose()
