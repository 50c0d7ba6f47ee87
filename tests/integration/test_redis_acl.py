"""Each Redis lets in only its own client, and that client only to its own keys and
commands: attacked on real redis-servers with the stacks' ACL files (the demo's,
deploy/redis/generate_acl.py), as a process that reached a Redis port would."""

from collections.abc import Iterator

import httpx
import pytest
from redis import Redis
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    ResponseError,
)

from services import registry
from services.gateway.rate_limit import KEY_PREFIX
from services.gateway.settings import DEMO_API_KEY
from stack.redis_servers import ADMIN, PROBE, password_file
from tests.conftest import RedisServers
from tests.integration.conftest import Stack

DATA, LIMITS = registry.REDIS, registry.REDIS_LIMITS
# Commands no service may run, whatever the key: they change what Redis keeps or
# evicts, empty it, list every key, run code of one's own, or look at other clients.
ADMINISTRATION = [
    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    ("CONFIG", "GET", "requirepass"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("ACL", "LIST"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("SLOWLOG", "GET"),
    ("SHUTDOWN", "NOSAVE"),
    ("EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "value:planted"),
]


def password(user: str) -> str:
    return password_file(user).read_text().rstrip("\n")


def connect(servers: RedisServers, redis: str, user: str | None = None) -> Redis:
    """A client of ``redis`` as ``user`` with its demo password (None: no credentials)."""
    secret = password(user) if user else None
    return Redis(port=servers.ports[redis], decode_responses=True, username=user, password=secret)


@pytest.fixture
def admin(redis_servers: RedisServers) -> Iterator[dict[str, Redis]]:
    clients = {redis: connect(redis_servers, redis, ADMIN) for redis in registry.REDISES}
    yield clients
    for client in clients.values():
        client.close()


@pytest.mark.parametrize("redis", registry.REDISES)
def test_without_credentials_nothing_answers_and_the_probe_only_pings(
    redis_servers: RedisServers, redis: str
) -> None:
    port = redis_servers.ports[redis]
    with Redis(port=port, decode_responses=True) as anonymous:
        for command in [("PING",), ("GET", "value:x"), ("INFO",), *ADMINISTRATION]:
            with pytest.raises(AuthenticationError):
                anonymous.execute_command(*command)
    # The health checks' user: any password, PING only.
    any_password = "any"  # noqa: S105 (not a secret: the probe user takes any)
    with Redis(port=port, username=PROBE, password=any_password, decode_responses=True) as probe:
        assert probe.ping()
        for command in [
            ("GET", "value:x"),
            ("SET", "value:x", "planted"),
            ("GET", f"{KEY_PREFIX}:x"),
            ("SCAN", "0"),
            ("INFO",),
            *ADMINISTRATION,
        ]:
            with pytest.raises(NoPermissionError):
                probe.execute_command(*command)


@pytest.mark.parametrize(
    ("redis", "user"),
    [
        (DATA, "gateway"),  # the limiter's password opens nothing in the data Redis
        (LIMITS, "cache"),  # nor the cache's in the limits Redis
    ],
)
def test_a_user_exists_only_in_the_redis_of_its_service(
    redis_servers: RedisServers, redis: str, user: str
) -> None:
    with pytest.raises(AuthenticationError):
        Redis(port=redis_servers.ports[redis], username=user, password=password("cache")).ping()


@pytest.mark.parametrize(("redis", "user"), [(DATA, "cache"), (LIMITS, "gateway")])
def test_a_wrong_password_is_refused(redis_servers: RedisServers, redis: str, user: str) -> None:
    with pytest.raises(AuthenticationError):
        guess = f"{password(user)}-guessed"
        Redis(port=redis_servers.ports[redis], username=user, password=guess).ping()


def test_the_cache_touches_only_its_own_keys(
    redis_servers: RedisServers, admin: dict[str, Redis]
) -> None:
    admin[DATA].set(f"{KEY_PREFIX}:planted", "5")  # as if limits were kept here
    admin[DATA].set("elsewhere", "x")
    with connect(redis_servers, DATA, "cache") as cache:
        # What services/cache/store.py does (lists: through lists.py's scripts).
        cache.set("value:acl-test", "reply", ex=60)
        assert cache.hincrby("stats", "hits", 0) >= 0
        # A script it loads runs with its rights: its own keys only, even there.
        script = "redis.call('rpush', KEYS[1], 'turn'); return redis.call('llen', KEYS[1])"
        append = cache.script_load(script)
        assert cache.evalsha(append, 1, "list:acl-test") == 1
        with pytest.raises(ResponseError, match=r"[Nn]o permissions"):
            cache.evalsha(append, 1, f"{KEY_PREFIX}:planted-list")
        assert cache.dbsize() >= 3
        for command in [
            ("GET", f"{KEY_PREFIX}:planted"),
            ("SET", f"{KEY_PREFIX}:planted", "0"),  # resetting someone's limit
            ("DEL", f"{KEY_PREFIX}:planted"),
            ("GET", "elsewhere"),
            ("RENAME", "value:acl-test", "elsewhere"),
            *ADMINISTRATION,
            ("SCRIPT", "FLUSH"),  # loading its own scripts, yes; dropping everyone's, no
        ]:
            with pytest.raises(NoPermissionError):
                cache.execute_command(*command)
    admin[DATA].delete(f"{KEY_PREFIX}:planted", "elsewhere", "value:acl-test", "list:acl-test")


def test_the_gateway_touches_only_the_limits_keys(
    redis_servers: RedisServers, admin: dict[str, Redis]
) -> None:
    admin[LIMITS].set("value:planted", "a reply")
    with connect(redis_servers, LIMITS, "gateway") as gateway:
        gateway.set(f"{KEY_PREFIX}:acl-test", "1", px=60_000)
        assert gateway.get(f"{KEY_PREFIX}:acl-test") == "1"
        # A script it loads runs with its rights: no key outside the prefix, even there.
        escape = gateway.script_load("return redis.call('get', KEYS[1])")
        with pytest.raises(ResponseError, match=r"[Nn]o permissions"):
            gateway.evalsha(escape, 1, "value:planted")
        assert gateway.evalsha(escape, 1, f"{KEY_PREFIX}:acl-test") == "1"
        for command in [
            ("GET", "value:planted"),
            ("SET", "list:history:planted", "x"),
            ("DEL", f"{KEY_PREFIX}:acl-test"),  # not a command the limiter sends
            ("RPUSH", f"{KEY_PREFIX}:acl-test", "x"),
            *ADMINISTRATION,
        ]:
            with pytest.raises(NoPermissionError):
                gateway.execute_command(*command)
    admin[LIMITS].delete("value:planted", f"{KEY_PREFIX}:acl-test")


def test_the_services_are_never_refused_what_they_do(stack: Stack, admin: dict[str, Redis]) -> None:
    """Real traffic through the chain (limits, lookups, stores, history appends) as the
    services' own users: nothing in either Redis's ACL log, where every refusal lands,
    even those a client ignores (a refused limit would only show as a fail-open)."""
    for redis in admin.values():
        redis.acl_log_reset()
    headers = {"X-API-Key": DEMO_API_KEY}
    with httpx.Client(base_url=stack.url("gateway"), headers=headers, timeout=10) as gateway:
        first = gateway.post("/chat", json={"message": "hello acl"})
        assert first.status_code == 200 and first.json()["history_saved"] is True
        session = first.json()["session_id"]
        again = {"message": "hello acl", "session_id": session}
        assert gateway.post("/chat", json=again).json()["cached"] is True
        assert gateway.get(f"/chat/{session}/history").status_code == 200
    for name, redis in admin.items():
        assert redis.acl_log() == [], name
