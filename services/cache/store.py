"""What the cache service keeps in Redis, and how.

Values are strings under ``value:<key>``, always with a TTL. Lists (chat
histories) are services/cache/lists.py's: appended to once per id, trimmed,
read a page at a time, expiring when idle if the caller gives them a TTL. Redis
never evicts anything (``noeviction``, deploy/redis/redis.conf): a full Redis
refuses writes (503 "Redis is full"), so nothing acknowledged is lost, and cached
values make room again only when their TTL runs out. Hit and miss counts live in
Redis too (hash ``stats``), so ``GET /stats`` is right however many workers or
replicas serve it. The service connects as the ACL user ``cache``, which may touch
only these keys and run only these commands (scripts/gen_redis_acl.py).
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from services.cache.lists import LIST_PREFIX, Appended, AppendOptions, Lists, Page
from services.cache.settings import CacheSettings
from services.common.faults import Faults, InjectedFaultError
from services.common.redis import open_redis
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
