"""Client-side load balancing: which replica of a downstream service the next call goes to.

A service's ``<NAME>_<DEPENDENCY>_URL`` names one or more base URLs, comma-separated
(``http://cache:8002``, or natively ``http://127.0.0.1:8002,http://127.0.0.1:8012``).
Each is resolved to its addresses; the union of them is the pool of replicas, and
every call takes the next one, round-robin.

Why not leave it to the connection pool: aiohttp's connector does spread *new*
connections over a name's DNS answers (it rotates them), but a keep-alive
connection, once open, is reused for every later call to the same host and port,
whichever replica it reached. Under steady traffic a caller opens a few
connections at start, to whatever replicas the first answers named, and keeps
sending everything there: replicas started later get nothing, and one of three
may take all the load. So the pick is made here, per call, and the call goes to
the picked address itself (an absolute URL with the IP; the ``Host`` header keeps
the name it was given). Each address then has its own keep-alive connections in
the pool, and the client span's ``server.address``/``server.port`` name the
replica that was called.

What it costs on the hot path: a clock read and an index. Names are resolved
(the event loop's getaddrinfo, in a thread) only when the pool is older than
``ttl_seconds`` (a setting: ``<NAME>_RESOLVE_TTL_SECONDS``), so a scale-up is seen
within that; an IP literal is never resolved. A replica that cannot be connected
to leaves the pool at once until the next resolution (``failed``), so a dead
replica costs at most one failed call per caller per TTL; a pool left empty is
resolved again on the next call.

It balances over what the name resolves to: a name with one virtual address in
front of the replicas (a Kubernetes ClusterIP Service) is one "replica" here, and
the proxy behind it picks per connection, so keep-alive pins again; a name that
resolves to every replica (Docker's service names, a headless Service) is spread.
"""

import asyncio
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

_log = logging.getLogger(__name__)

# host, port -> its addresses (IP strings), in the resolver's order.
Resolve = Callable[[str, int], Awaitable[list[str]]]
# After a failed resolution with an older pool at hand: try again this soon.
_RETRY_RESOLVE_SECONDS = 1.0


class NoEndpointError(OSError):
    """None of the downstream's URLs resolves to any address."""


@dataclass(frozen=True)
class Endpoint:
    """One replica: where to send (``base``: scheme, IP, port and any path prefix),
    and the ``Host`` header to send (None when the URL named an IP itself)."""

    base: str
    host_header: str | None = None

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (``/cache/key``) on this replica."""
        return f"{self.base}{path}"


@dataclass(frozen=True)
class _Origin:
    """One base URL as configured, split into what resolution needs."""

    scheme: str
    host: str
    port: int
    prefix: str  # a path prefix, without the trailing slash

    @classmethod
    def parse(cls, url: str) -> "_Origin":
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def endpoint(self, address: str) -> Endpoint:
        ip = f"[{address}]" if ":" in address else address  # IPv6 in a URL
        base = f"{self.scheme}://{ip}:{self.port}{self.prefix}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return Endpoint(base, None if self.is_ip else f"{host}:{self.port}")


async def resolve_with_loop(host: str, port: int) -> list[str]:
    """The addresses of ``host`` for TCP, as the event loop's getaddrinfo has them
    (the system resolver in a worker thread: /etc/hosts, Docker's embedded DNS)."""
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))


class Endpoints:
    """The replicas of one downstream service, taken in turn (round-robin).

    ``urls``: its base URLs. ``first``: where the rotation starts (default: at
    random, so that the callers started together, uvicorn's workers or a caller's
    replicas, do not all send their first calls to the same replica).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        ttl_seconds: float,
        resolve: Resolve = resolve_with_loop,
        clock: Callable[[], float] = time.monotonic,
        first: int | None = None,
    ) -> None:
        if not urls:
            raise ValueError("no URL to balance over")
        self.origins = tuple(_Origin.parse(url) for url in urls)
        self.ttl_seconds = ttl_seconds
        self._resolve = resolve
        self._clock = clock
        self._turn = random.randrange(1 << 16) if first is None else first  # noqa: S311
        self._pool: tuple[Endpoint, ...] = ()
        self._resolved: tuple[Endpoint, ...] = ()  # the last resolution, failures included
        self._expires = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def pool(self) -> tuple[Endpoint, ...]:
        """The replicas calls go to now."""
        return self._pool

    async def pick(self) -> Endpoint:
        """The replica for the next call (resolving first when the pool is stale or
        empty); NoEndpointError when there is none."""
        if not self._pool or self._clock() >= self._expires:
            await self._refresh()
        endpoint = self._pool[self._turn % len(self._pool)]
        self._turn += 1
        return endpoint

    def failed(self, endpoint: Endpoint) -> None:
        """``endpoint`` could not be connected to: call the others until the next
        resolution (and resolve again at the next call if none is left)."""
        self._pool = tuple(e for e in self._pool if e != endpoint)
        if not self._pool:
            self._expires = float("-inf")

    async def _refresh(self) -> None:
        async with self._lock:  # one resolution at a time; the others wait for it
            if self._pool and self._clock() < self._expires:
                return  # another call resolved while this one waited
            resolved = await asyncio.gather(
                *(self._addresses(origin) for origin in self.origins), return_exceptions=True
            )
            pool = [
                origin.endpoint(address)
                for origin, addresses in zip(self.origins, resolved, strict=True)
                if not isinstance(addresses, BaseException)
                for address in addresses
            ]
            errors = [str(r) for r in resolved if isinstance(r, BaseException)]
            if errors:
                _log.warning("could not resolve %s: %s", self._names(), "; ".join(errors))
            if pool:
                self._resolved = self._pool = tuple(dict.fromkeys(pool))
                self._expires = self._clock() + self.ttl_seconds
            elif self._resolved:
                # A resolver that fails for a moment should not stop every call:
                # the last answer, until a retry soon.
                self._pool = self._resolved
                self._expires = self._clock() + min(self.ttl_seconds, _RETRY_RESOLVE_SECONDS)
            else:
                raise NoEndpointError(f"no address for {self._names()}")

    async def _addresses(self, origin: _Origin) -> list[str]:
        if origin.is_ip:
            return [origin.host]
        # Sorted: the resolver's order may change between answers, the rotation should not.
        return sorted(await self._resolve(origin.host, origin.port))

    def _names(self) -> str:
        return ", ".join(f"{o.host}:{o.port}" for o in self.origins)
