"""Faults on purpose: switched at run time through the admin listener (never the
service's own port), guarded by the admin key and a failure budget, and visible
in the traces they break."""

from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from services.cache.settings import CacheSettings
from services.chat.settings import ChatSettings
from services.common.admin import FailedAttempts
from services.gateway.settings import GatewaySettings
from tests.services.conftest import Chain, InMemoryTelemetry, attrs

ADMIN = {"X-Admin-Key": "admin-for-tests"}
FAILURES = 3


@pytest.fixture
def gateway_settings(redis_url: str) -> GatewaySettings:
    # Any free port: the registry's is make dev's.
    return GatewaySettings(
        redis_url=redis_url,
        admin_key="admin-for-tests",
        admin_port=0,
        admin_failures_per_minute=FAILURES,
    )


@pytest.fixture
def chat_settings() -> ChatSettings:
    # A fault set at start, from the environment's shape (CHAT_FAULTS).
    return ChatSettings.model_validate(
        {"thinking_base_ms": 0, "faults": {"cache": {"latency_ms": 30}}}
    )


@pytest.fixture
async def admin(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's admin listener, over a real socket."""
    url = chain.apps["gateway"].state.admin_url
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        yield client


async def test_the_public_port_has_no_admin_endpoints(
    chain: Chain, admin: httpx.AsyncClient
) -> None:
    plan = {"self": {"error_rate": 1.0, "status": 503}}
    for method in ("GET", "PUT", "DELETE"):
        public = await chain.gateway.request(method, "/admin/faults", json=plan, headers=ADMIN)
        assert public.status_code == 404, method
        assert public.headers["content-type"] == "application/problem+json"
    assert (await chain.chat("still fine")).status_code == 200
    document = (await chain.gateway.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/admin")]
    # The admin listener publishes no document either.
    assert (await admin.get("/openapi.json", headers=ADMIN)).status_code == 404


async def test_wrong_admin_keys_are_401_then_429_even_with_the_right_key(
    chain: Chain, admin: httpx.AsyncClient
) -> None:
    plan = {"self": {"error_rate": 1.0, "status": 503}}
    statuses = [
        (await admin.put("/admin/faults", json=plan, headers=headers)).status_code
        for headers in [{}, *({"X-Admin-Key": f"guess-{i}"} for i in range(FAILURES))]
    ]
    assert statuses == [401] * FAILURES + [429]
    # Past the budget the right key is refused too: no answer tells a right guess.
    refused = await admin.put("/admin/faults", json=plan, headers=ADMIN)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await chain.chat("still fine")).status_code == 200  # no plan was set


def test_failed_attempts_free_up_a_minute_after_each() -> None:
    now = [0.0]
    attempts = FailedAttempts(2, clock=lambda: now[0])
    attempts.count()
    now[0] = 10.0
    assert attempts.retry_after() is None
    attempts.count()
    assert attempts.retry_after() == 50  # the first one ages out at 60
    now[0] = 60.0
    assert attempts.retry_after() is None
    attempts.count()  # the one at 10 is the oldest now
    assert attempts.retry_after() == 10


async def test_without_an_admin_key_there_is_no_admin_listener(redis_url: str) -> None:
    from services.cache.main import create_app

    app = create_app(
        CacheSettings(redis_url=redis_url, admin_port=0), InMemoryTelemetry().outbound()
    )
    async with app.router.lifespan_context(app):
        assert not hasattr(app.state, "admin_url")
    assert not [r for r in app.routes if getattr(r, "path", "").startswith("/admin")]


async def test_faults_switch_on_and_off_at_run_time(chain: Chain, admin: httpx.AsyncClient) -> None:
    plan = {"self": {"error_rate": 1.0, "status": 503}}
    assert (await admin.put("/admin/faults", json=plan, headers=ADMIN)).status_code == 200
    assert (await admin.get("/admin/faults", headers=ADMIN)).json() == {
        "self": {"latency_ms": 0, "error_rate": 1.0, "status": 503}
    }
    failing = await chain.chat("hello")
    assert failing.status_code == 503
    assert failing.json()["detail"] == "Injected fault: this service is failing."
    assert (await chain.gateway.get("/healthz")).status_code == 200  # probes are exempt
    # The admin listener is exempt too: it is not the service's request handling.
    assert (await admin.delete("/admin/faults", headers=ADMIN)).status_code == 204
    assert (await chain.chat("hello")).status_code == 200


async def test_an_injected_fault_is_a_span_of_its_own(chain: Chain) -> None:
    response = await chain.chat("slow cache calls")  # chat's start-up plan: cache +30 ms
    assert response.status_code == 200
    injected = [s for s in chain.spans("chat") if s.name == "fault.injected"]
    assert injected and all(attrs(s)["fault.target"] == "cache" for s in injected)
    assert all((s.end_time or 0) - (s.start_time or 0) >= 30_000_000 for s in injected)


async def test_a_failing_service_is_a_500_with_its_exception_recorded(
    chain: Chain, admin: httpx.AsyncClient
) -> None:
    plan = {"self": {"error_rate": 1.0}}
    await admin.put("/admin/faults", json=plan, headers=ADMIN)
    response = await chain.chat("hello")
    assert response.status_code == 500
    server = next(
        s
        for s in chain.spans("gateway")
        if s.kind is SpanKind.SERVER and attrs(s).get("url.path") == "/chat"
    )
    assert server.status.status_code is StatusCode.ERROR
    assert any(
        e.name == "exception" and "InjectedFaultError" in str(attrs(e).get("exception.type"))
        for e in server.events
    )
