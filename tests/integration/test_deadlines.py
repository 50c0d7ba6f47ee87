"""The gateway's time budget holds whatever hangs below it (real processes; the
hangs are faults set through each service's admin listener, /admin/faults)."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import registry
from services.common.deadline import BUDGET_HEADER
from services.common.models import CLIENT_ID_HEADER
from services.gateway.settings import DEMO_API_KEY
from stack.native import DEMO_ADMIN_KEY
from tests.conftest import RedisServers
from tests.integration.conftest import Stack, chain
from tests.support.otlp import otlp_receiver

BUDGET = 1.0
# The way back up, and a loaded 2-core machine's scheduling noise.
MARGIN = 0.3
HANG = {"latency_ms": 20_000}


@pytest.fixture(scope="module")
def budgeted(redis_servers: RedisServers, log_dir: Path) -> Iterator[Stack]:
    env = {
        "GATEWAY_REQUEST_BUDGET_SECONDS": str(BUDGET),
        "CHAT_THINKING_BASE_MS": "100",
        **{f"{s}_ADMIN_KEY": DEMO_ADMIN_KEY for s in ("GATEWAY", "CHAT", "CACHE")},
    }
    # One process per service: a fault set through /admin/faults is that process's
    # (with several workers, each would need its own call).
    with (
        otlp_receiver() as receiver,
        chain(receiver, redis_servers, log_dir, env, cache_workers=1) as running,
    ):
        yield running


@pytest.fixture(autouse=True)
def no_faults_after(budgeted: Stack) -> Iterator[None]:
    yield
    for service in registry.names():
        httpx.delete(
            f"{budgeted.admin_url(service)}/admin/faults", headers={"X-Admin-Key": DEMO_ADMIN_KEY}
        )


@pytest.mark.parametrize(
    ("service", "plan", "detail"),
    [
        ("chat", {"self": HANG}, "chat: out of time"),
        ("cache", {"self": HANG}, "chat: out of time"),
        ("cache", {"redis": HANG}, "chat: out of time"),
        ("chat", {"cache": HANG}, "chat: out of time"),
    ],
    ids=["chat hangs", "cache hangs", "redis hangs", "calls to cache hang"],
)
def test_whatever_hangs_the_answer_comes_within_the_budget(
    budgeted: Stack, service: str, plan: dict[str, object], detail: str
) -> None:
    set_fault = httpx.put(
        f"{budgeted.admin_url(service)}/admin/faults",
        json=plan,
        headers={"X-Admin-Key": DEMO_ADMIN_KEY},
    )
    assert set_fault.status_code == 200
    started = time.monotonic()
    response = httpx.post(
        f"{budgeted.url('gateway')}/chat",
        json={"message": f"hello {uuid.uuid4()}"},
        headers={"X-API-Key": DEMO_API_KEY},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith(detail)
    assert elapsed < BUDGET + MARGIN


def test_without_faults_the_budget_is_no_obstacle(budgeted: Stack) -> None:
    response = httpx.post(
        f"{budgeted.url('gateway')}/chat",
        json={"message": "hello"},
        headers={"X-API-Key": DEMO_API_KEY},
        timeout=10,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "sent",
    ["²".encode(), "٣".encode(), b"1" * 5000, b"-5", b"1e3", b"0x10", b""],
    ids=["superscript 2", "arabic-indic 3", "5000 digits", "negative", "float", "hex", "empty"],
)
def test_a_budget_that_is_no_number_is_a_400_problem(budgeted: Stack, sent: bytes) -> None:
    """What a caller of an inner hop sends as its budget must be plain ASCII digits
    (str.isdigit() takes "²", and int() of it failed with a 500 and a traceback)."""
    response = httpx.post(
        f"{budgeted.url('chat')}/replies",
        json={"message": "hello"},
        headers={CLIENT_ID_HEADER.encode(): b"alice", BUDGET_HEADER.encode(): sent},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert BUDGET_HEADER in response.json()["detail"]
    assert response.headers["x-trace-id"] == response.json()["trace_id"]


def test_a_budget_in_plain_digits_is_taken(budgeted: Stack) -> None:
    response = httpx.post(
        f"{budgeted.url('chat')}/replies",
        json={"message": "hello"},
        headers={CLIENT_ID_HEADER: "alice", BUDGET_HEADER: "1"},  # 1 ms: out of time
        timeout=10,
    )
    assert response.status_code == 504, response.text
    assert response.json()["detail"].startswith("chat: out of time")
