"""Faults on purpose: switched at run time, guarded by the admin key, and visible
in the traces they break."""

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from services.cache.settings import CacheSettings
from services.chat.settings import ChatSettings
from services.gateway.settings import GatewaySettings
from tests.unit.conftest import Chain, attrs

ADMIN = {"X-Admin-Key": "admin-for-tests"}


@pytest.fixture
def gateway_settings(redis_url: str) -> GatewaySettings:
    return GatewaySettings(redis_url=redis_url, admin_key="admin-for-tests")


@pytest.fixture
def chat_settings() -> ChatSettings:
    # A fault set at start, from the environment's shape (CHAT_FAULTS).
    return ChatSettings.model_validate(
        {"thinking_base_ms": 0, "faults": {"cache": {"latency_ms": 30}}}
    )


async def test_the_admin_endpoints_need_the_key_and_stay_out_of_the_openapi(chain: Chain) -> None:
    plan = {"self": {"error_rate": 1.0, "status": 503}}
    for headers in ({}, {"X-Admin-Key": "wrong"}):
        refused = await chain.gateway.put("/admin/faults", json=plan, headers=headers)
        assert refused.status_code == 401
    assert (await chain.chat("still fine")).status_code == 200
    document = (await chain.gateway.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/admin")]


async def test_without_an_admin_key_there_are_no_admin_endpoints(redis_url: str) -> None:
    from services.cache.main import create_app

    app = create_app(CacheSettings(redis_url=redis_url))
    assert not [r for r in app.routes if getattr(r, "path", "").startswith("/admin")]
    app.state.telemetry.shutdown()


async def test_faults_switch_on_and_off_at_run_time(chain: Chain) -> None:
    plan = {"self": {"error_rate": 1.0, "status": 503}}
    assert (await chain.gateway.put("/admin/faults", json=plan, headers=ADMIN)).status_code == 200
    assert (await chain.gateway.get("/admin/faults", headers=ADMIN)).json() == {
        "self": {"latency_ms": 0, "error_rate": 1.0, "status": 503}
    }
    failing = await chain.chat("hello")
    assert failing.status_code == 503
    assert failing.json()["detail"] == "Injected fault: this service is failing."
    assert (await chain.gateway.get("/healthz")).status_code == 200  # probes are exempt
    assert (await chain.gateway.delete("/admin/faults", headers=ADMIN)).status_code == 204
    assert (await chain.chat("hello")).status_code == 200


async def test_an_injected_fault_is_a_span_of_its_own(chain: Chain) -> None:
    response = await chain.chat("slow cache calls")  # chat's start-up plan: cache +30 ms
    assert response.status_code == 200
    injected = [s for s in chain.spans("chat") if s.name == "fault.injected"]
    assert injected and all(attrs(s)["fault.target"] == "cache" for s in injected)
    assert all((s.end_time or 0) - (s.start_time or 0) >= 30_000_000 for s in injected)


async def test_a_failing_service_is_a_500_with_its_exception_recorded(chain: Chain) -> None:
    plan = {"self": {"error_rate": 1.0}}
    await chain.gateway.put("/admin/faults", json=plan, headers=ADMIN)
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
