"""Client-side load balancing (services/common/balancing.py): pure, with a resolver
and a clock of the test's own; then ServiceClient over a mock transport."""

import asyncio
import json
from collections import Counter

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.chat.settings import ChatSettings
from services.common.balancing import Endpoint, Endpoints, NoEndpointError
from services.common.faults import Faults
from services.common.http_client import ServiceClient
from services.common.problems import DownstreamError


class FakeDns:
    """Names -> addresses, changed by the test; counts the lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        if host not in self.answers:
            raise OSError(f"no such name: {host}")
        return list(self.answers[host])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def endpoints(urls: list[str], dns: FakeDns, clock: Clock, ttl: float = 5) -> Endpoints:
    return Endpoints(urls, ttl_seconds=ttl, resolve=dns, clock=clock, first=0)


async def picks(balancer: Endpoints, n: int) -> list[str]:
    return [(await balancer.pick()).base for _ in range(n)]


async def test_every_address_of_every_url_in_turn() -> None:
    dns = FakeDns({"chat": ["10.0.0.3", "10.0.0.1", "10.0.0.2"]})
    balancer = endpoints(["http://chat:8001/", "http://127.0.0.1:8011"], dns, Clock())
    got = await picks(balancer, 8)
    # Sorted per name (DNS answers come in any order), IP literals as given.
    pool = ["http://10.0.0.1:8001", "http://10.0.0.2:8001", "http://10.0.0.3:8001"]
    assert got == [*pool, "http://127.0.0.1:8011", *pool, "http://127.0.0.1:8011"]


async def test_the_host_header_keeps_the_name_and_an_ip_url_needs_none() -> None:
    dns = FakeDns({"cache": ["10.0.0.7"], "v6.example": ["fd00::7"]})
    balancer = endpoints(
        ["http://cache:8002/prefix/", "http://127.0.0.1:8012", "https://v6.example"],
        dns,
        Clock(),
    )
    by_base = {e.base: e for e in [await balancer.pick() for _ in range(3)]}
    assert by_base == {
        "http://10.0.0.7:8002/prefix": Endpoint("http://10.0.0.7:8002/prefix", "cache:8002"),
        "http://127.0.0.1:8012": Endpoint("http://127.0.0.1:8012", None),
        "https://[fd00::7]:443": Endpoint("https://[fd00::7]:443", "v6.example:443"),
    }
    assert by_base["http://10.0.0.7:8002/prefix"].url("/cache/k") == (
        "http://10.0.0.7:8002/prefix/cache/k"
    )


async def test_names_are_resolved_once_per_ttl_and_ip_literals_never() -> None:
    dns, clock = FakeDns({"chat": ["10.0.0.1"]}), Clock()
    balancer = endpoints(["http://chat:8001"], dns, clock, ttl=5)
    await picks(balancer, 100)
    assert dns.lookups == 1  # not once per call: the hot path only reads a clock
    dns.answers["chat"] = ["10.0.0.1", "10.0.0.2"]  # scaled up
    clock.now = 4.9
    assert set(await picks(balancer, 4)) == {"http://10.0.0.1:8001"}
    clock.now = 5.0  # the pool is stale: the new replica is seen
    assert set(await picks(balancer, 4)) == {"http://10.0.0.1:8001", "http://10.0.0.2:8001"}
    assert dns.lookups == 2

    literal = FakeDns({})
    only_ips = endpoints(["http://127.0.0.1:1", "http://127.0.0.1:2"], literal, clock)
    await picks(only_ips, 10)
    assert literal.lookups == 0


async def test_concurrent_calls_on_a_stale_pool_resolve_once() -> None:
    dns = FakeDns({"chat": ["10.0.0.1", "10.0.0.2"]})
    balancer = endpoints(["http://chat:8001"], dns, Clock())
    got = await asyncio.gather(*(balancer.pick() for _ in range(10)))
    assert dns.lookups == 1
    assert Counter(e.base for e in got) == {"http://10.0.0.1:8001": 5, "http://10.0.0.2:8001": 5}


async def test_a_replica_that_cannot_be_reached_is_left_out_until_the_next_resolution() -> None:
    dns, clock = FakeDns({"chat": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}), Clock()
    balancer = endpoints(["http://chat:8001"], dns, clock)
    dead = Endpoint("http://10.0.0.2:8001", "chat:8001")
    balancer.failed(dead)  # before any pick: nothing to leave out yet
    await balancer.pick()
    balancer.failed(dead)
    assert dead.base not in await picks(balancer, 6)
    assert dns.lookups == 1
    clock.now = 5.0  # resolved again: it gets another chance
    assert dead.base in await picks(balancer, 3)


async def test_a_pool_left_empty_is_resolved_again_at_the_next_call() -> None:
    dns = FakeDns({"chat": ["10.0.0.1"]})
    balancer = endpoints(["http://chat:8001"], dns, Clock())
    only = await balancer.pick()
    dns.answers["chat"] = ["10.0.0.9"]  # the replica was replaced
    balancer.failed(only)
    assert await picks(balancer, 2) == ["http://10.0.0.9:8001"] * 2
    assert dns.lookups == 2


async def test_a_failing_resolver_keeps_the_last_answer_and_none_at_all_is_an_error() -> None:
    dns, clock = FakeDns({"chat": ["10.0.0.1"]}), Clock()
    balancer = endpoints(["http://chat:8001", "http://gone:8001"], dns, clock)
    assert await picks(balancer, 2) == ["http://10.0.0.1:8001"] * 2  # what resolves is used
    dns.answers.clear()
    clock.now = 10
    assert await picks(balancer, 1) == ["http://10.0.0.1:8001"]
    assert dns.lookups == 4  # two names, resolved twice
    clock.now = 10.5
    await balancer.pick()
    assert dns.lookups == 4  # retried after a second, not at every call
    clock.now = 11
    await balancer.pick()
    assert dns.lookups == 6

    with pytest.raises(NoEndpointError, match="gone:8001"):
        await endpoints(["http://gone:8001"], FakeDns({}), clock).pick()


async def test_the_rotation_starts_at_random_so_callers_do_not_all_start_together() -> None:
    urls = [f"http://127.0.0.1:{port}" for port in range(8001, 8011)]
    firsts = {(await Endpoints(urls, ttl_seconds=5).pick()).base for _ in range(20)}
    assert len(firsts) > 1


def test_the_setting_takes_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_CACHE_URL", "http://127.0.0.1:8002, http://127.0.0.1:8012")
    assert [str(url) for url in ChatSettings().cache_url] == [
        "http://127.0.0.1:8002/",
        "http://127.0.0.1:8012/",
    ]
    monkeypatch.setenv("CHAT_CACHE_URL", "http://cache:8002")
    assert [str(url) for url in ChatSettings().cache_url] == ["http://cache:8002/"]
    monkeypatch.setenv("CHAT_CACHE_URL", " , ")
    with pytest.raises(ValueError, match="at least 1 item"):
        ChatSettings()


# --- ServiceClient: each call, and each retry, to the next replica ------------------


async def test_calls_and_an_idempotent_retry_go_to_the_next_replica() -> None:
    seen: list[tuple[str, str, str]] = []

    def replica(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.headers["host"]))
        if request.url.host == "10.0.0.1" and request.url.path == "/cache/fails-once":
            problem = {"status": 503, "detail": "Redis is unavailable."}
            headers = {"content-type": "application/problem+json"}
            return httpx.Response(503, content=json.dumps(problem), headers=headers)
        return httpx.Response(200, json={"ok": True})

    dns = FakeDns({"cache": ["10.0.0.1", "10.0.0.2"]})
    balancer = endpoints(["http://cache:8002"], dns, Clock())
    faults = Faults({}, TracerProvider().get_tracer("test"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(replica)) as http:
        client = ServiceClient("cache", http, faults, balancer)
        for _ in range(2):
            await client.request("POST", "/lists/a")
        await client.request("GET", "/cache/fails-once")  # 10.0.0.1 fails, 10.0.0.2 answers
        relayed = await client.exchange("POST", "http://collector:4318/v1/traces")
    assert relayed.status_code == 200
    assert seen == [
        ("POST", "http://10.0.0.1:8002/lists/a", "cache:8002"),
        ("POST", "http://10.0.0.2:8002/lists/a", "cache:8002"),
        ("GET", "http://10.0.0.1:8002/cache/fails-once", "cache:8002"),
        ("GET", "http://10.0.0.2:8002/cache/fails-once", "cache:8002"),
        # An absolute URL is not balanced.
        ("POST", "http://collector:4318/v1/traces", "collector:4318"),
    ]


async def test_a_replica_refusing_connections_is_skipped_and_none_left_is_a_503() -> None:
    def replica(request: httpx.Request) -> httpx.Response:
        if request.url.port == 8012:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)

    balancer = endpoints(["http://127.0.0.1:8002", "http://127.0.0.1:8012"], FakeDns({}), Clock())
    faults = Faults({}, TracerProvider().get_tracer("test"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(replica)) as http:
        client = ServiceClient("cache", http, faults, balancer)
        await client.request("POST", "/lists/a")  # 8002
        with pytest.raises(DownstreamError, match="cache: unreachable"):
            await client.request("POST", "/lists/a")  # 8012: refused, not retried (POST)
        for _ in range(3):
            await client.request("POST", "/lists/a")  # 8002 only, until resolved again
    no_address = endpoints(["http://gone:8002"], FakeDns({}), Clock())
    async with httpx.AsyncClient(transport=httpx.MockTransport(replica)) as http:
        client = ServiceClient("cache", http, faults, no_address)
        with pytest.raises(DownstreamError, match=r"cache: unreachable \(no address\)"):
            await client.request("GET", "/healthz")
