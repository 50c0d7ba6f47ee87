"""The chat page's spans, relayed to the Collector: ``POST /otlp/v1/traces``.

The page's OpenTelemetry exporter sends OTLP/HTTP (JSON) to the page's own
origin, so the Collector is never published to browsers and no CORS rule is
needed. On the way the gateway treats the spans like any other client input:

- the API key is required and the export is counted against the client's
  telemetry budget (``GATEWAY_OTLP_EXPORTS_PER_MINUTE``, apart from its chats);
- the body has a limit of its own (``GATEWAY_OTLP_MAX_BODY_BYTES``: a batch of
  spans outgrows a chat message, so the app-wide 16 KiB would refuse it);
- only JSON, the browser exporter's format, whose every resource names the page's
  service (``service.name=chat-web``): a browser cannot write spans in the name of
  the gateway or any other service;
- each resource gets the sender's ``client.id``, as authentication found it.

The Collector's answer (status, body, ``Retry-After``) goes back as it is, so
the exporter retries as it would against the Collector itself; a Collector that
cannot be reached is a 503 (also retried). The relay is not traced, nor are its
rate-limit check and its call to the Collector (an untraced path of the app
factory: a trace per export would bury the chats' traces); ``gateway.browser.spans`` counts
what went through it, by ``outcome``: relayed, refused (the Collector said they
are wrong: a 4xx) or failed (the Collector did not take them).
"""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from opentelemetry.metrics import Counter
from starlette.responses import Response

from services.common.http_client import Downstream, ServiceClient
from services.common.problems import DownstreamError, ProblemError
from services.gateway.rate_limit import TELEMETRY
from services.gateway.routes import authenticated
from services.gateway.settings import GatewaySettings
from services.telemetry import Telemetry, otlp_http_traces_url

OTLP_TRACES_PATH = "/otlp/v1/traces"
BROWSER_SERVICE = "chat-web"
_JSON = "application/json"
# What the Collector's answer may carry back to the browser.
_RELAYED_HEADERS = ("content-type", "retry-after")

_log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)  # a protocol endpoint (OTLP), not the API


@dataclass(frozen=True)
class _Relay:
    url: str  # the Collector's OTLP/HTTP traces URL
    collector: ServiceClient
    spans: Counter


@dataclass(frozen=True)
class TelemetryRelay:
    """The gateway's client for the Collector (a resource of the app factory:
    readiness does not wait for it; chats work without it)."""

    settings: GatewaySettings

    @asynccontextmanager
    async def open(self, app: FastAPI, telemetry: Telemetry) -> AsyncIterator[None]:
        url = str(self.settings.otlp_traces_url or otlp_http_traces_url())
        collector = Downstream("collector", [url], self.settings)
        async with collector.open(app, telemetry):
            app.state.telemetry_relay = _Relay(
                url,
                getattr(app.state, collector.state_name),
                telemetry.meter.create_counter(
                    "gateway.browser.spans",
                    unit="{span}",
                    description="Spans of the chat page through the relay, by outcome.",
                ),
            )
            yield


TelemetryClientId = Annotated[str, Depends(authenticated(TELEMETRY))]


@router.post(OTLP_TRACES_PATH)
async def relay_traces(request: Request, client_id: TelemetryClientId) -> Response:
    relay: _Relay = request.app.state.telemetry_relay
    if request.headers.get("content-type", "").split(";")[0].strip() != _JSON:
        raise ProblemError(415, f"Send OTLP/HTTP as {_JSON}.")
    try:
        export = json.loads(await request.body())
        spans = _stamp(export, client_id)
    # Whatever the shape, a wrong one is the sender's error (RecursionError: JSON
    # nested deeper than the parser goes).
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
        raise ProblemError(400, f"Not an OTLP trace export of {BROWSER_SERVICE}: {exc}") from exc
    try:
        answer = await relay.collector.exchange(
            "POST", relay.url, content=json.dumps(export), headers={"Content-Type": _JSON}
        )
    except DownstreamError:
        relay.spans.add(spans, {"outcome": "failed"})
        raise
    outcome = "relayed" if answer.is_success else "refused" if answer.is_client_error else "failed"
    relay.spans.add(spans, {"outcome": outcome})
    if not answer.is_success:
        _log.warning("the Collector answered %s to browser spans", answer.status_code)
    headers = {k: v for k, v in answer.headers.items() if k.lower() in _RELAYED_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=headers)


def _stamp(export: Any, client_id: str) -> int:
    """Check that every resource is the page's, add ``client.id`` to each, and
    count the spans. Anything of another shape raises."""
    spans = 0
    for resource_spans in export["resourceSpans"]:
        resource = resource_spans.setdefault("resource", {})
        attributes: list[dict[str, Any]] = resource.setdefault("attributes", [])
        service = {a["key"]: a["value"] for a in attributes}.get("service.name", {})
        if service.get("stringValue") != BROWSER_SERVICE:
            raise ValueError(f"service.name must be {BROWSER_SERVICE}")
        attributes[:] = [a for a in attributes if a["key"] != "client.id"]
        attributes.append({"key": "client.id", "value": {"stringValue": client_id}})
        spans += sum(len(scope.get("spans", [])) for scope in resource_spans["scopeSpans"])
    return spans
