"""The gateway's relay of the chat page's spans (POST /otlp/v1/traces) to a real
OTLP/HTTP receiver on loopback, standing in for the Collector: what the page may
say (services/gateway/browser_spans.py), and what arrives when it says more.
tests/e2e/test_browser_spans.py sends the same forgeries through the native stack."""

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from stack.processes import free_port
from tests.services.conftest import Chain, attrs
from tests.support.otlp import OtlpReceiver, otlp_receiver

OTLP = "/otlp/v1/traces"
KEY = {"X-API-Key": DEMO_API_KEY}
JSON = {**KEY, "Content-Type": "application/json"}


def export(*, service: str = "chat-web", spans: int = 1, padding: int = 0, **resource: str) -> Any:
    """An OTLP/HTTP JSON trace export, as the browser's exporter writes one (a click
    span; ``padding`` goes into an attribute the relay drops; ``resource`` keywords are
    attribute keys with dots written as underscores)."""
    attributes = {"service.name": service, **{k.replace("_", "."): v for k, v in resource.items()}}
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
    body = export(spans=3, padding=8 * 1024, client_id="someone-else")
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
    # The page's exporter reads the answer as OTLP/JSON.
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}


async def test_the_app_wide_body_limit_still_holds_for_chats(chain: Chain) -> None:
    response = await chain.chat("x" * 17_000)
    assert response.status_code == 413


def forged(mutate: Any) -> str:
    """export(), changed by ``mutate`` (which edits the dict in place)."""
    body = export()
    mutate(body)
    return json.dumps(body)


def _second_array(body: Any) -> None:
    # Proto field name beside the camelCase one: the Collector's decoder takes both.
    smuggled = copy.deepcopy(body["resourceSpans"][0])
    smuggled["resource"]["attributes"][0]["value"]["stringValue"] = "gateway"
    body["resource_spans"] = [smuggled]


def _both_spellings(body: Any) -> None:
    value = body["resourceSpans"][0]["resource"]["attributes"][0]["value"]
    value["string_value"] = "gateway"


def _span(body: Any) -> Any:
    return body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]


def _fetches(body: Any, count: int) -> None:
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[:] = [{**spans[0], "spanId": uuid.uuid4().hex[:16], "kind": 3} for _ in range(count)]


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (401, {"Content-Type": "application/json"}, json.dumps(export())),
        (415, {**KEY, "Content-Type": "application/x-protobuf"}, b"\x0a\x00"),
        (400, JSON, "not json"),
        (400, JSON, "[" * 60_000),
        (400, JSON, "[]"),
        (413, JSON, json.dumps(export(padding=70 * 1024))),
        (400, JSON, forged(_second_array)),
        (400, JSON, forged(_both_spellings)),
        (400, JSON, forged(lambda b: b.update(unknown=1))),
        (400, JSON, forged(lambda b: _span(b).update(kind=2))),
        (400, JSON, forged(lambda b: _span(b).update(kind=9))),
        (400, JSON, forged(lambda b: _span(b).update(traceId="zz" * 16))),
        (400, JSON, forged(lambda b: _span(b).update(spanId="ab" * 4))),
        (400, JSON, forged(lambda b: _span(b).update(traceId="00" * 16))),
        (400, JSON, forged(lambda b: _span(b).update(status={"code": 7}))),
        (400, JSON, forged(lambda b: _span(b)["attributes"].append(_span(b)["attributes"][0]))),
        (400, JSON, json.dumps(export(spans=129))),
        (400, JSON, forged(lambda b: _fetches(b, 17))),
        (
            400,
            JSON,
            forged(
                lambda b: _span(b).update(
                    attributes=[{"key": f"k{i}", "value": {"intValue": i}} for i in range(33)]
                )
            ),
        ),
        (400, JSON, '{"resourceSpans": [], "resourceSpans": []}'),
    ],
    ids=[
        "no key",
        "protobuf",
        "not json",
        "nested too deep",
        "not an object",
        "too large",
        "second array spelled resource_spans",
        "stringValue and string_value",
        "unknown field",
        "a server span",
        "no such kind",
        "trace id not hex",
        "span id too short",
        "trace id all zero",
        "no such status",
        "attribute given twice",
        "too many spans",
        "too many fetch spans",
        "too many attributes",
        "duplicate JSON key",
    ],
)
async def test_what_the_relay_refuses_never_reaches_the_collector(
    chain: Chain, receiver: OtlpReceiver, status: int, headers: dict[str, str], body: str
) -> None:
    response = await chain.gateway.post(OTLP, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert receiver.spans == []


def _duplicate_service(body: Any) -> None:
    attributes = body["resourceSpans"][0]["resource"]["attributes"]
    attributes.insert(0, {"key": "service.name", "value": {"stringValue": "gateway"}})


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(export(service="gateway")),
        forged(_duplicate_service),
        json.dumps(
            export(
                service_instance_id="forged",
                deployment_environment_name="prod",
                service_namespace="elsewhere",
                telemetry_sdk_version="x" * 40,
                telemetry_sdk_language="webjs",
            )
        ),
    ],
    ids=["another service", "service.name twice, gateway first", "resource of its own"],
)
async def test_the_resource_is_the_relays_whatever_the_page_says(
    chain: Chain, receiver: OtlpReceiver, body: str
) -> None:
    response = await chain.gateway.post(OTLP, content=body, headers=JSON)
    assert response.status_code == 200, response.text
    [span] = receiver.spans
    assert span.resource == {
        "service.name": "chat-web",
        "service.namespace": "otel-chat-demo",
        "client.id": "demo-client",
        **({"telemetry.sdk.language": "webjs"} if "webjs" in body else {}),
    }


def page_span(name: str, kind: int, **attributes: Any) -> Any:
    """export() with one span of this name, kind and attributes (JSON values)."""
    body = export()
    span = _span(body)
    span.update(name=name, kind=kind)
    span["attributes"] = [
        {
            "key": key,
            "value": {"intValue": value}
            if isinstance(value, int) and not isinstance(value, bool)
            else {"boolValue": value}
            if isinstance(value, bool)
            else {"stringValue": value},
        }
        for key, value in attributes.items()
    ]
    return body


SESSION = uuid.uuid4().hex
INTERNAL, CLIENT = 1, 3


@pytest.mark.parametrize(
    ("sent", "name", "kept"),
    [
        # What the page makes goes on as it is...
        (
            page_span(
                "POST",
                CLIENT,
                **{
                    "http.request.method": "POST",
                    "url.full": "http://127.0.0.1:8000/chat",
                    "http.response.status_code": 200,
                    "http.request.body.size": 20,
                },
            ),
            "POST",
            {
                "http.request.method": "POST",
                "url.full": "http://127.0.0.1:8000/chat",
                "http.response.status_code": 200,
                "http.request.body.size": 20,
            },
        ),
        (
            page_span(
                "chat.send", INTERNAL, **{"chat.message.length": 5, "chat.session.new": True}
            ),
            "chat.send",
            {"chat.message.length": 5, "chat.session.new": True},
        ),
        # ...session ids, queries, fragments and credentials in URLs do not...
        (
            page_span(
                "GET",
                CLIENT,
                **{"url.full": f"https://u:pw@[::1]:8443/chat/{SESSION}/history?key=x#{SESSION}"},
            ),
            "GET",
            {"url.full": "https://[::1]:8443/chat/{session_id}/history"},
        ),
        (page_span("click", INTERNAL, **{"url.full": "javascript:alert(1)"}), "click", {}),
        # ...nor names, dimensions and peers that the page never makes.
        (
            page_span(
                f"GET /chat/{SESSION}",
                CLIENT,
                **{
                    "http.request.method": "GET",
                    "http.route": "/anything",
                    "peer.service": "evil",
                    "server.address": "evil.example",
                    "db.system.name": "redis",
                    "http.response.status_code": 999,
                },
            ),
            "_OTHER",
            {},
        ),
        (page_span("POST", CLIENT, **{"http.request.method": "DELETE"}), "POST", {}),
        (page_span("chat.send", INTERNAL, **{"chat.message.length": "long"}), "chat.send", {}),
        (
            page_span("documentLoad", INTERNAL, **{"user_agent.original": "x" * 5000}),
            "documentLoad",
            {"user_agent.original": "x" * 1024},
        ),
    ],
    ids=[
        "fetch",
        "chat.send",
        "url with a session id",
        "not an http url",
        "foreign name, route and peers",
        "method other than the name",
        "value of another type",
        "value too long",
    ],
)
async def test_only_what_the_page_makes_goes_on(
    chain: Chain, receiver: OtlpReceiver, sent: Any, name: str, kept: dict[str, Any]
) -> None:
    response = await chain.gateway.post(OTLP, content=json.dumps(sent), headers=JSON)
    assert response.status_code == 200, response.text
    [span] = receiver.spans
    assert span.span.name == name
    assert span.attributes == kept
    assert span.span.dropped_attributes_count == len(_span(sent)["attributes"]) - len(kept)
    assert SESSION not in receiver.everything()


async def test_events_and_links_the_page_does_not_make_are_dropped(
    chain: Chain, receiver: OtlpReceiver
) -> None:
    body = export()
    _span(body)["events"] = [
        {"name": "fetchStart", "timeUnixNano": "1700000000000000000"},
        {
            "name": "exception",
            "timeUnixNano": "1700000000000000001",
            "attributes": [
                {"key": "exception.message", "value": {"stringValue": "boom"}},
                {"key": "http.route", "value": {"stringValue": "/x"}},
            ],
        },
        {"name": f"event {SESSION}", "timeUnixNano": "1700000000000000002"},
    ]
    _span(body)["links"] = [{"traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16]}]
    response = await chain.gateway.post(OTLP, content=json.dumps(body), headers=JSON)
    assert response.status_code == 200, response.text
    [span] = receiver.spans
    assert [event.name for event in span.span.events] == ["fetchStart", "exception"]
    assert [a.key for a in span.span.events[1].attributes] == ["exception.message"]
    assert (span.span.dropped_events_count, span.span.dropped_links_count) == (1, 1)
    assert list(span.span.links) == []


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
    assert response.headers["content-type"] == "application/problem+json"
    assert relayed(chain) == {"refused": 2}
