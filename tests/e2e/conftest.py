"""The whole native pipeline, started once for these tests on free ports.

gateway -> chat -> cache -> Redis (and the gateway's limits Redis), exporting to the
Collector (the very same otel-collector/config.yaml), which feeds Jaeger (traces),
Prometheus (metrics) and VictoriaLogs (logs). See stack.native for what stands in for what.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from services import registry
from services.chat.assistant import reply_cache_key
from services.gateway.settings import DEMO_API_KEY
from stack.backends import Backends
from stack.native import NativeStack, Ports, native_stack
from stack.redis_servers import admin_url, password_file

# The request that carries every kind of secret: none may show up anywhere.
SECRET_HEADERS = {
    "X-API-Key": DEMO_API_KEY,
    "Authorization": "Bearer e2e-secret-bearer-7f3a",
    "Cookie": "session=e2e-secret-cookie-9c1d",
}
# The Redis passwords the services read from their files: never in telemetry either.
REDIS_PASSWORDS = tuple(
    password_file(s.name).read_text().rstrip("\n") for s in registry.SERVICES if s.redis
)
SECRET_VALUES = (DEMO_API_KEY, "e2e-secret-bearer-7f3a", "e2e-secret-cookie-9c1d", *REDIS_PASSWORDS)


@dataclass(frozen=True)
class Traffic:
    """What the tests sent through the gateway, and what came back."""

    responses: list[dict[str, Any]]
    secret_trace_id: str

    @property
    def trace_ids(self) -> list[str]:
        return [response["trace_id"] for response in self.responses]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    run_dir: Path = tmp_path_factory.mktemp("native-stack")
    with native_stack(run_dir, Ports.free()) as running:
        yield running


@pytest.fixture(scope="session")
def injected_spans() -> list[int]:
    """Spans a test sent to the Collector directly (not through a service's SDK),
    so the span-count comparison can tell them apart."""
    return []


@pytest.fixture(scope="session")
def backends(stack: NativeStack) -> Backends:
    return Backends(stack.ports)


@pytest.fixture(scope="session")
def traffic(stack: NativeStack) -> Traffic:
    """A few dozen chats: 12 distinct messages twice (misses, then hits), in 3 sessions."""
    gateway = f"http://127.0.0.1:{stack.ports.entry}"
    topics = ("hello", "traces", "metrics", "logs", "spans", "bye")
    messages = [f"{topic} {uuid.uuid4().hex[:6]}" for topic in topics * 2]
    responses: list[dict[str, Any]] = []
    sessions: list[str | None] = [None, None, None]
    with httpx.Client(base_url=gateway, headers={"X-API-Key": DEMO_API_KEY}, timeout=10) as client:
        for round_ in range(2):
            for i, message in enumerate(messages):
                session = sessions[i % 3]
                body = {"message": message} | ({"session_id": session} if session else {})
                response = client.post("/chat", json=body)
                assert response.status_code == 200, response.text
                reply = response.json()
                assert reply["cached"] is (round_ == 1)
                sessions[i % 3] = reply["session_id"]
                responses.append(reply)
        secret = client.post("/chat", json={"message": "hello, secretly"}, headers=SECRET_HEADERS)
        assert secret.status_code == 200
    return Traffic(responses=responses, secret_trace_id=secret.json()["trace_id"])


@pytest.fixture(scope="session")
def failures(stack: NativeStack, traffic: Traffic) -> None:
    """Real failures, so the dashboards' failure queries have data of their own.

    A value of the wrong type where the chat service's cached reply for a message
    would be (the cache store keeps values under ``value:<key>``) makes the cache's
    Redis read fail: a Redis span with an error status, a 502 from the cache (once:
    a failure the cache relays from Redis is not retried), and a degraded reply, all in traces
    the gateway started (the span counts of test_nothing_lost count those traces).
    """
    message = f"a reply whose cache entry is broken {uuid.uuid4().hex[:6]}"
    with Redis.from_url(admin_url(stack.ports.redis)) as redis:
        redis.rpush(f"value:{reply_cache_key(message)}", "a list where a string should be")
    gateway = f"http://127.0.0.1:{stack.ports.entry}"
    with httpx.Client(base_url=gateway, headers={"X-API-Key": DEMO_API_KEY}, timeout=10) as client:
        for _ in range(3):
            response = client.post("/chat", json={"message": message})
            assert response.status_code == 200, response.text
            assert response.json()["degraded"] is True
