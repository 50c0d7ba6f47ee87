"""The gateway's relay of the chat page's spans (POST /otlp/v1/traces) to a real
OTLP/HTTP receiver on loopback, standing in for the Collector."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.processes import free_port
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from tests.support.otlp import OtlpReceiver, otlp_receiver
from tests.unit.conftest import Chain, attrs

OTLP = "/otlp/v1/traces"
KEY = {"X-API-Key": DEMO_API_KEY}
JSON = {**KEY, "Content-Type": "application/json"}


def export(*, service: str = "chat-web", spans: int = 1, padding: int = 0, **resource: str) -> Any:
    """An OTLP/HTTP JSON trace export, as the browser's exporter writes one."""
    attributes = {"service.name": service, **resource}
    trace_id = uuid.uuid4().hex
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": k, "value": {"stringValue": v}} for k, v in attributes.items()
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "test"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": uuid.uuid4().hex[:16],
                                "name": "click",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000001000000",
                                "attributes": [
                                    {"key": "padding", "value": {"stringValue": "x" * padding}}
                                ],
                            }
                            for _ in range(spans)
                        ],
                    }
                ],
            }
        ]
    }


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture
def traces_path() -> str:
    return "/v1/traces"


@pytest.fixture
def traces_url(receiver: OtlpReceiver, traces_path: str) -> str:
    return f"{receiver.endpoint}{traces_path}"


@pytest.fixture
def gateway_settings(redis_url: str, traces_url: str) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_url,
        otlp_traces_url=traces_url,
        otlp_exports_per_minute=5,
        otlp_max_body_bytes=64 * 1024,
    )


def relayed(chain: Chain) -> dict[str, int]:
    """gateway.browser.spans by outcome."""
    points = chain.metric_points("gateway").get("gateway.browser.spans", [])
    return {attrs(p)["outcome"]: p.value for p in points}


async def test_spans_reach_the_collector_with_the_senders_client_id(
    chain: Chain, receiver: OtlpReceiver
) -> None:
    # Over the app-wide 16 KiB body limit, within the relay's own.
    body = export(spans=3, padding=8 * 1024, **{"client.id": "someone-else"})
    assert len(json.dumps(body)) > 16 * 1024
    response = await chain.gateway.post(OTLP, content=json.dumps(body), headers=JSON)
    assert response.status_code == 200, response.text
    assert len(receiver.spans) == 3
    for span in receiver.spans:
        assert span.service == "chat-web"
        assert span.resource["client.id"] == "demo-client"  # the gateway's word, not the page's
        assert span.trace_id == body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    assert relayed(chain) == {"relayed": 3}
    # The relay itself leaves no trace of its own behind.
    assert chain.spans("gateway") == []


async def test_the_app_wide_body_limit_still_holds_for_chats(chain: Chain) -> None:
    response = await chain.chat("x" * 17_000)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (401, {"Content-Type": "application/json"}, json.dumps(export())),
        (415, {**KEY, "Content-Type": "application/x-protobuf"}, b"\x0a\x00"),
        (400, JSON, json.dumps(export(service="gateway"))),
        (400, JSON, json.dumps({"resourceSpans": [{"scopeSpans": []}]})),
        (400, JSON, "not json"),
        (400, JSON, "[" * 60_000),
        (413, JSON, json.dumps(export(padding=70 * 1024))),
    ],
    ids=[
        "no key",
        "protobuf",
        "another service",
        "no service",
        "not json",
        "nested too deep",
        "too large",
    ],
)
async def test_what_the_relay_refuses_never_reaches_the_collector(
    chain: Chain, receiver: OtlpReceiver, status: int, headers: dict[str, str], body: str
) -> None:
    response = await chain.gateway.post(OTLP, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert receiver.spans == []


async def test_exports_have_a_budget_of_their_own(chain: Chain) -> None:
    for _ in range(5):
        ok = await chain.gateway.post(OTLP, content=json.dumps(export()), headers=JSON)
        assert ok.status_code == 200
    over = await chain.gateway.post(OTLP, content=json.dumps(export()), headers=JSON)
    assert over.status_code == 429
    assert over.headers["ratelimit-policy"] == '"telemetry";q=5;w=60'
    assert "Retry-After" in over.headers
    # Chats are counted apart: telemetry never uses up a client's requests.
    assert (await chain.chat("hello")).status_code == 200


@pytest.mark.parametrize("traces_url", [f"http://127.0.0.1:{free_port()}/v1/traces"])
async def test_an_unreachable_collector_is_a_503(chain: Chain) -> None:
    response = await chain.gateway.post(OTLP, content=json.dumps(export(spans=2)), headers=JSON)
    assert response.status_code == 503  # the exporter retries it
    assert response.json()["detail"] == "collector: unreachable."
    assert relayed(chain) == {"failed": 2}


@pytest.mark.parametrize("traces_path", ["/v1/nothing-here"])
async def test_the_collectors_own_refusal_goes_back_as_it_is(
    chain: Chain, receiver: OtlpReceiver
) -> None:
    response = await chain.gateway.post(OTLP, content=json.dumps(export(spans=2)), headers=JSON)
    assert response.status_code == 404  # what the receiver answered, not a 502 of ours
    assert relayed(chain) == {"refused": 2}
