"""What the cache service keeps in Redis, and how.

Values are strings under ``value:<key>``, always with a TTL. Lists (chat
histories) are services/cache/lists.py's: appended to once per id, trimmed,
read a page at a time, expiring when idle if the caller gives them a TTL. Redis
never evicts anything (``noeviction``, deploy/redis/redis.conf): a full Redis
refuses writes (503 "Redis is full"), so nothing acknowledged is lost, and cached
values make room again only when their TTL runs out. Hit and miss counts live in
Redis too (hash ``stats``), so ``GET /stats`` is right however many workers or
replicas serve it. The service connects as the ACL user ``cache``, which may touch
only these keys and run only these commands (deploy/redis/generate_acl.py).
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.responses import Response

from services.cache.lists import LIST_PREFIX, Appended, AppendOptions, Lists, Page
from services.cache.settings import CacheSettings
from services.common.faults import Faults, InjectedFaultError
from services.common.problems import DownstreamError, problem_for
from services.telemetry import Telemetry

_STATS = "stats"
_log = logging.getLogger(__name__)


class CacheStore:
    """Needs a client made with ``decode_responses=True``: Redis replies are str.

    Every operation first applies the ``redis`` fault, if one is set: as slow as
    it says, or failing as an unreachable Redis would.
    """

    def __init__(self, redis: Redis, faults: Faults) -> None:
        self._redis = redis
        self._faults = faults
        self._lists = Lists(redis)

    async def _fault(self) -> None:
        try:
            await self._faults.inject("redis")
        except InjectedFaultError as exc:
            raise RedisConnectionError("injected fault") from exc

    async def get(self, key: str) -> str | None:
        await self._fault()
        value = cast(str | None, await self._redis.get(f"value:{key}"))
        try:
            await self._redis.hincrby(_STATS, "misses" if value is None else "hits", 1)
        except ResponseError:  # a full Redis refuses it (OOM): the lookup still counts
            _log.debug("stats not counted: Redis refused the write")
        return value

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        await self._fault()
        await self._redis.set(f"value:{key}", value, ex=ttl_seconds)

    async def delete(self, key: str) -> bool:
        await self._fault()
        return bool(await self._redis.delete(f"value:{key}"))

    async def append(self, key: str, value: str, options: AppendOptions) -> Appended:
        """Append once per item id; see services/cache/lists.py."""
        await self._fault()
        return await self._lists.append(key, value, options)

    async def load_scripts(self) -> None:
        await self._lists.load()

    async def read_page(self, key: str, *, start: int | None, count: int) -> Page:
        """Up to ``count`` items from position ``start`` (None: the oldest kept)."""
        await self._fault()
        return await self._lists.page(key, start=start, count=count)

    async def list_length(self, key: str) -> int:
        """How many items the list holds (0: there is no such list)."""
        await self._fault()
        return int(await self._redis.llen(LIST_PREFIX + key))

    async def stats(self) -> dict[str, int]:
        await self._fault()
        counts = cast(dict[str, str], await self._redis.hgetall(_STATS))
        keys = await self._redis.dbsize()
        return {
            "hits": int(counts.get("hits", 0)),
            "misses": int(counts.get("misses", 0)),
            "keys": int(keys),
        }

    async def ping(self) -> None:
        await self._fault()
        await self._redis.ping()

    async def forget_idle_connections(self) -> None:
        """Close the pooled connections no request is using: after Redis went away,
        each would fail the next command sent on it, however long Redis has been
        back."""
        await self._redis.connection_pool.disconnect(inuse_connections=False)


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


class RedisConnection:
    """The cache service's one dependency: a Redis connection pool.

    While the app runs, ``app.state.store`` is a :class:`CacheStore` over it.
    """

    def __init__(self, settings: CacheSettings) -> None:
        self._settings = settings

    @asynccontextmanager
    async def open(self, app: FastAPI, telemetry: Telemetry) -> AsyncIterator[None]:
        async with open_redis(
            str(self._settings.redis_url),
            password=self._settings.redis_password_value(),
            timeout_seconds=self._settings.redis_timeout_seconds,
            telemetry=telemetry,
        ) as redis:
            app.state.store = store = CacheStore(redis, app.state.faults)
            await store.load_scripts()
            yield

    async def check_ready(self, app: FastAPI) -> None:
        store: CacheStore = app.state.store
        await store.ping()


async def redis_failed(request: Request, exc: Exception) -> Response:
    """The app's handler of RedisError: Redis down, slow or full is a 503/504 problem;
    the Redis span holds the cause."""
    if isinstance(exc, RedisTimeoutError):
        return problem_for(request, DownstreamError(504, "Redis did not answer in time."))
    if isinstance(exc, ResponseError):
        # By class, not by message: inside a transaction (a history append) redis-py
        # starts the message with the failing command, not with OOM.
        if isinstance(exc, OutOfMemoryError):
            # maxmemory reached; Redis evicts nothing (see deploy/redis/redis.conf).
            failure = DownstreamError(503, "Redis is full: the write was refused.")
        else:  # e.g. WRONGTYPE: Redis is there, the command or the data is wrong
            failure = DownstreamError(502, "Redis rejected the command.")
        return problem_for(request, failure)
    store: CacheStore = request.app.state.store
    await store.forget_idle_connections()  # they lead to the Redis that went away
    return problem_for(request, DownstreamError(503, "Redis is unavailable."))
