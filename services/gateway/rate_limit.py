"""Rate limits kept in Redis, so every gateway worker and replica shares them.

Their Redis is theirs alone (redis-limits, deploy/redis/redis-limits.conf: no
eviction, nothing else stored there), and the gateway connects to it as the ACL
user ``gateway``, which may touch only keys under ``KEY_PREFIX``.

Built on the ``limits`` library (sliding-window counters: two small keys per
caller, no per-request entries). Two limits:

- requests per client id, after authentication (``GATEWAY_RATE_LIMIT_PER_MINUTE``);
  the chat page's telemetry exports have a budget of their own
  (``GATEWAY_OTLP_EXPORTS_PER_MINUTE``), so spans never use up a client's chats;
- failed authentications per client address (``GATEWAY_AUTH_FAILURES_PER_MINUTE``),
  checked before the key is: once an address is over it, every request from it
  is a 429 for a while, right key or wrong, so guessing keys does not pay.

Responses carry the IETF ``RateLimit-Policy`` and ``RateLimit`` headers
(draft-ietf-httpapi-ratelimit-headers): the quota and window, what remains and
when it frees up; a 429 adds ``Retry-After``.

When Redis cannot be reached the gateway fails open: requests are served
unlimited, each one counted by ``gateway.rate_limit.bypassed``, and one WARNING
is logged when the outage starts (one INFO when it ends). A chat demo prefers
serving to refusing; an API whose limits protect money would fail closed.
"""

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.problems import ProblemError
from services.gateway.settings import GatewaySettings
from services.telemetry import Telemetry

_log = logging.getLogger(__name__)

KEY_PREFIX = "gateway:ratelimit"


@dataclass(frozen=True)
class Quota:
    """Where a caller stands against one limit, as response headers."""

    name: str
    limit: RateLimitItem
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        policy = f'"{self.name}";q={self.limit.amount};w={self.limit.get_expiry()}'
        return {
            "RateLimit-Policy": policy,
            "RateLimit": f'"{self.name}";r={self.remaining};t={self.reset_seconds}',
        }


# The per-client limits, by the name their RateLimit headers carry, and what they count.
PER_CLIENT = "per-client"
TELEMETRY = "telemetry"
_COUNTS = {PER_CLIENT: "requests", TELEMETRY: "telemetry exports"}


class RateLimits:
    def __init__(
        self,
        storage: RedisStorage,
        *,
        per_client: RateLimitItem,
        telemetry: RateLimitItem,
        auth_failures: RateLimitItem,
        bypassed: Counter,
    ) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._per_client = {PER_CLIENT: per_client, TELEMETRY: telemetry}
        self._auth_failures = auth_failures
        self._bypassed = bypassed
        self._store_down = False

    async def take(self, client_id: str, limit: str = PER_CLIENT) -> Quota | None:
        """Count one request of ``client_id`` against ``limit``: 429 over it, else
        its quota (None while the store is unreachable)."""
        item = self._per_client[limit]
        # Requests keep the namespace they always had; other limits get their own.
        namespace = "client" if limit == PER_CLIENT else f"client-{limit}"
        try:
            allowed = await self._limiter.hit(item, namespace, client_id)
            quota = await self._quota(limit, item, namespace, client_id)
        except StorageError as exc:
            self._fail_open(exc)
            return None
        self._store_up()
        if not allowed:
            raise _too_many(quota, f"More than {item.amount} {_COUNTS[limit]} per minute.")
        return quota

    async def refuse_if_guessing(self, address: str) -> None:
        """429 while ``address`` is over its failed-authentication limit."""
        try:
            allowed = await self._limiter.test(self._auth_failures, "auth-failures", address)
            if allowed:
                return
            quota = await self._quota(
                "auth-failures", self._auth_failures, "auth-failures", address
            )
        except StorageError as exc:
            self._fail_open(exc)
            return
        raise _too_many(quota, "Too many failed authentications from this address.")

    async def count_failure(self, address: str) -> None:
        try:
            await self._limiter.hit(self._auth_failures, "auth-failures", address)
        except StorageError as exc:
            self._fail_open(exc)

    async def _quota(self, name: str, limit: RateLimitItem, *identifiers: str) -> Quota:
        stats = await self._limiter.get_window_stats(limit, *identifiers)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return Quota(name, limit, stats.remaining, reset)

    def _fail_open(self, exc: StorageError) -> None:
        self._bypassed.add(1)
        if not self._store_down:
            self._store_down = True
            _log.warning(
                "rate-limit store unreachable, serving without limits: %s",
                type(exc.storage_error).__name__,
            )

    def _store_up(self) -> None:
        if self._store_down:
            self._store_down = False
            _log.info("rate-limit store reachable again, limits apply")


def _too_many(quota: Quota, detail: str) -> ProblemError:
    headers = {**quota.headers(), "Retry-After": str(quota.reset_seconds)}
    return ProblemError(429, detail, headers=headers)


@dataclass(frozen=True)
class RateLimitStore:
    """The gateway's Redis, redis-limits: a server for the limits alone, so chat data
    can neither fill its memory nor evict a counter (a resource of the app factory:
    readiness does not wait for it, since the gateway fails open without it)."""

    settings: GatewaySettings

    @asynccontextmanager
    async def open(self, app: FastAPI, telemetry: Telemetry) -> AsyncIterator[None]:
        timeout = self.settings.redis_timeout_seconds
        password = self.settings.redis_password_value()  # its ACL user is in the URL
        storage = RedisStorage(
            f"async+{self.settings.redis_url}",
            implementation="redispy",  # redis-py, which the project already uses
            wrap_exceptions=True,  # every Redis failure is a StorageError
            key_prefix=KEY_PREFIX,  # the only keys its ACL user may touch
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            **({"password": password} if password else {}),
        )
        bridge: Any = storage.bridge  # limits' redis-py side (its attributes are untyped)
        client: Redis = bridge.storage
        telemetry.instrument_redis(client)  # its commands are spans too
        # Load the Lua scripts now: otherwise the first request after a start finds
        # none (NOSCRIPT), and its trace shows a failed EVALSHA before the retry.
        with suppress(RedisError), suppress_instrumentation():
            for script in (bridge.SCRIPT_SLIDING_WINDOW, bridge.SCRIPT_ACQUIRE_SLIDING_WINDOW):
                await client.script_load(script)
        app.state.rate_limits = RateLimits(
            storage,
            per_client=RateLimitItemPerMinute(self.settings.rate_limit_per_minute),
            telemetry=RateLimitItemPerMinute(self.settings.otlp_exports_per_minute),
            auth_failures=RateLimitItemPerMinute(self.settings.auth_failures_per_minute),
            bypassed=telemetry.meter.create_counter(
                "gateway.rate_limit.bypassed",
                unit="{request}",
                description="Requests served without a rate-limit check: store unreachable.",
            ),
        )
        try:
            yield
        finally:
            await client.aclose()
