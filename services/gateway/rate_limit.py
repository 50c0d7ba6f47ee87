"""Rate limits kept in Redis, so every gateway worker and replica shares them.

Their Redis is theirs alone (redis-limits, deploy/redis/redis-limits.conf: no
eviction, nothing else stored there), and the gateway connects to it as the ACL
user ``gateway``, which may touch only keys under ``KEY_PREFIX``.

Built on the ``limits`` library (sliding-window counters: two small keys per
caller, no per-request entries). Two limits:

- requests per client id, after authentication (``GATEWAY_RATE_LIMIT_PER_MINUTE``);
  the chat page's telemetry exports have a budget of their own
  (``GATEWAY_OTLP_EXPORTS_PER_MINUTE``), so spans never use up a client's chats;
- failed authentications per client address (``GATEWAY_AUTH_FAILURES_PER_MINUTE``):
  past it, a wrong or missing key from that address is a 429 instead of a 401.

The address is the TCP peer's: uvicorn takes ``X-Forwarded-For`` from no one
(deploy/gateway/uvicorn.env) unless a stack names its proxies. IPv4 counts per
address, IPv6 per /64 (what one host or one site is usually given: a host can
pick any address in its /64), an IPv4-mapped IPv6 address as the IPv4 one
(:func:`address_key`).

The failure budget throttles guesses, not the address. Behind a NAT, a proxy,
Docker's port publishing or ``kubectl port-forward`` every user shares one
address; refusing every request from an address over its budget let 20 wrong
keys a minute (one user's typo, repeated each second by the chat page's span
exports) lock them all out. Serving every valid key instead would let the
budget slow no one: past it, each further guess would still tell a right key
(served) from a wrong one (429), as fast as the guesser can send. So a valid key
is served past the budget only for a client already known at that address::

    key          address over budget   client known there   answer
    wrong, none  no                    -                    401, counted
    wrong, none  yes                   -                    429
    valid        -                     yes                  served (its own limit)
    valid        no                    no                   served, now known there
    valid        yes                   no                   429, as for a wrong key

A client becomes known at an address when it authenticates there within the
budget, and stays known until ``GATEWAY_KNOWN_CLIENT_SECONDS`` after its last
request there. A guess past the budget learns nothing: a right one is refused
with the same 429, after as many Redis round trips in sequence, as a wrong one.
The key is checked (in constant time, services/gateway/security.py) before any
of this. What is left: a client new to an address under attack waits until the
attack stops and its failures age out of the window; and a guesser behind the
same address as a known client may keep guessing that client's key, which a
long random key (docs/security/trust-boundary.md says how to make one) makes
hopeless at any rate.

Redis round trips, in sequence: a valid key, 2 (whether it is known there and
its per-client count, at once; then its quota); its first request from an
address, 2 more (the address's failures, then remembering it); a wrong key, 2
(counted, then the address's window).

Responses carry the IETF ``RateLimit-Policy`` and ``RateLimit`` headers
(draft-ietf-httpapi-ratelimit-headers): the quota and window, what remains and
when it frees up; a 429 adds ``Retry-After``.

When Redis cannot be reached the gateway fails open: requests are served
unlimited, each one counted by ``gateway.rate_limit.bypassed``, and one WARNING
is logged when the outage starts (one INFO when it ends). A chat demo prefers
serving to refusing; an API whose limits protect money would fail closed.
"""

import asyncio
import ipaddress
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


# The failed-authentication limit: its RateLimit headers' name, and its namespace.
AUTH_FAILURES = "auth-failures"
_GUESSING = "Too many failed authentications from this address."


def address_key(host: str | None) -> str:
    """Whose failures a client address counts as: an IPv4 address, an IPv6 /64."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return "unknown"  # no peer address (a Unix socket), or a proxy's garbage
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class RateLimits:
    def __init__(
        self,
        storage: RedisStorage,
        redis: Redis,
        *,
        per_client: RateLimitItem,
        telemetry: RateLimitItem,
        auth_failures: RateLimitItem,
        known_client_seconds: int,
        bypassed: Counter,
    ) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._redis = redis  # limits' own client: the known-client marks
        self._per_client = {PER_CLIENT: per_client, TELEMETRY: telemetry}
        self._auth_failures = auth_failures
        self._known_client_seconds = known_client_seconds
        self._bypassed = bypassed
        self._store_down = False

    async def admit(
        self, client_id: str, host: str | None, limit: str = PER_CLIENT
    ) -> Quota | None:
        """A request with ``client_id``'s key from ``host``: counted against ``limit``,
        and its quota (None while the store is unreachable). 429 over that limit,
        and, while the address is over its failure budget, for a client not known
        there (see the table above)."""
        item = self._per_client[limit]
        # Requests keep the namespace they always had; other limits get their own.
        namespace = "client" if limit == PER_CLIENT else f"client-{limit}"
        address = address_key(host)
        try:
            known, allowed = await asyncio.gather(
                self._still_known(address, client_id),
                self._limiter.hit(item, namespace, client_id),
            )
            if not known:
                failures = await self._failure_quota(address)
                if failures.remaining == 0:
                    raise _too_many(failures, _GUESSING)
                await self._redis.set(
                    self._known(address, client_id), 1, ex=self._known_client_seconds
                )
            quota = await self._quota(limit, item, namespace, client_id)
        except (StorageError, RedisError) as exc:
            self._fail_open(exc)
            return None
        self._store_up()
        if not allowed:
            raise _too_many(quota, f"More than {item.amount} {_COUNTS[limit]} per minute.")
        return quota

    async def count_failure(self, host: str | None) -> None:
        """A wrong or missing key from ``host``: counted against its address's
        budget; 429 once the address is over it (the 401 is the caller's)."""
        address = address_key(host)
        try:
            allowed = await self._limiter.hit(self._auth_failures, AUTH_FAILURES, address)
            failures = await self._failure_quota(address)
        except StorageError as exc:
            self._fail_open(exc)
            return
        self._store_up()
        if not allowed:
            raise _too_many(failures, _GUESSING)
        if failures.remaining == 0:
            # When the budget runs out (under a steady flood, again each time a slot
            # frees up: at most the budget's number of lines a minute per address).
            _log.warning(
                "failed authentications from %s reached %d a minute: its wrong keys "
                "get 429, and only clients known there are served",
                address,
                self._auth_failures.amount,
            )

    async def _still_known(self, address: str, client_id: str) -> bool:
        """Whether ``client_id`` is known at ``address``, and if so for longer now.
        (XX: never marks a client that is not known yet; that waits for the budget.)"""
        name = self._known(address, client_id)
        previous = await self._redis.set(name, 1, ex=self._known_client_seconds, xx=True, get=True)
        return previous is not None

    @staticmethod
    def _known(address: str, client_id: str) -> str:
        return f"{KEY_PREFIX}:known:{address}:{client_id}"

    async def _failure_quota(self, address: str) -> Quota:
        return await self._quota(AUTH_FAILURES, self._auth_failures, AUTH_FAILURES, address)

    async def _quota(self, name: str, limit: RateLimitItem, *identifiers: str) -> Quota:
        stats = await self._limiter.get_window_stats(limit, *identifiers)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return Quota(name, limit, stats.remaining, reset)

    def _fail_open(self, exc: StorageError | RedisError) -> None:
        self._bypassed.add(1)
        if not self._store_down:
            self._store_down = True
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            _log.warning(
                "rate-limit store unreachable, serving without limits: %s",
                type(cause).__name__,
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
            client,
            per_client=RateLimitItemPerMinute(self.settings.rate_limit_per_minute),
            telemetry=RateLimitItemPerMinute(self.settings.otlp_exports_per_minute),
            auth_failures=RateLimitItemPerMinute(self.settings.auth_failures_per_minute),
            known_client_seconds=self.settings.known_client_seconds,
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
