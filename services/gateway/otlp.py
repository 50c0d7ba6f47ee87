"""The chat page's spans, relayed to the Collector: ``POST /otlp/v1/traces``.

The page's OpenTelemetry exporter sends OTLP/HTTP (JSON) to the page's own
origin, so the Collector is never published to browsers and no CORS rule is
needed. On the way the gateway treats the spans like any other client input:

- the API key is required and the export is counted against the client's
  telemetry budget (``GATEWAY_OTLP_EXPORTS_PER_MINUTE``, apart from its chats);
- the body has a limit of its own (``GATEWAY_OTLP_MAX_BODY_BYTES``: a batch of
  spans outgrows a chat message, so the app-wide 16 KiB would refuse it);
- only OTLP/HTTP JSON, the browser exporter's format, parsed strictly into the
  protobuf messages and rebuilt by the page's policy (services/gateway/browser_spans.py):
  its resource is the relay's (``service.name=chat-web``, the sender's ``client.id``
  as authentication found it), and only the span names, kinds and attributes that
  the page makes go on. A browser cannot write spans in the name of the gateway or
  any other service, nor mint metric series of its choosing;
- what goes to the Collector is that rebuilt message as protobuf, never the client's
  bytes: a receiver that reads JSON differently from this check (duplicate keys,
  proto field names) never sees them.

The Collector's answer goes back in the page's encoding: its status and
``Retry-After`` as they are, so the exporter retries as it would against the
Collector itself, a success as OTLP/JSON (with its partial success, if any), a
refusal as problem+json; a Collector that cannot be reached is a 503 (also
retried). The relay is not traced, nor are its rate-limit check and its call to
the Collector (an untraced path of the app factory: a trace per export would bury
the chats' traces); ``gateway.browser.spans`` counts what went through it, by
``outcome``: relayed, refused (the Collector said they are wrong: a 4xx) or failed
(the Collector did not take them).
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from google.protobuf import json_format  # type: ignore[import-untyped]  # no stubs installed
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.metrics import Counter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.responses import Response

from services.common.http_client import Downstream, ServiceClient
from services.common.problems import DownstreamError, ProblemError
from services.gateway.browser_spans import (
    BROWSER_SERVICE,
    BadExportError,
    page_spans,
    parse_export,
    span_count,
)
from services.gateway.rate_limit import TELEMETRY
from services.gateway.routes import authenticated
from services.gateway.settings import GatewaySettings
from services.telemetry import Telemetry, otlp_http_traces_url

OTLP_TRACES_PATH = "/otlp/v1/traces"
_JSON = "application/json"
_PROTOBUF = "application/x-protobuf"

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
        export = page_spans(parse_export(await request.body()), client_id)
    except BadExportError as exc:
        # The reason names a field or a limit, cut short: it may quote the client's input.
        reason = str(exc)[:200]
        raise ProblemError(400, f"Not an OTLP trace export of {BROWSER_SERVICE}: {reason}") from exc
    spans = span_count(export)
    try:
        answer = await relay.collector.exchange(
            "POST",
            relay.url,
            content=export.SerializeToString(),
            headers={"Content-Type": _PROTOBUF},
        )
    except DownstreamError:
        relay.spans.add(spans, {"outcome": "failed"})
        raise
    outcome = "relayed" if answer.is_success else "refused" if answer.is_client_error else "failed"
    relay.spans.add(spans, {"outcome": outcome})
    if answer.is_success:
        return Response(_as_json(answer.content), media_type=_JSON)
    _log.warning("the Collector answered %s to browser spans", answer.status_code)
    retry = (
        {"Retry-After": answer.headers["retry-after"]} if "retry-after" in answer.headers else {}
    )
    raise ProblemError(
        _known(answer.status_code), f"The Collector answered {answer.status_code}.", headers=retry
    )


def _known(status: int) -> int:
    """The Collector's status, or 502 for one that HTTP does not define."""
    try:
        return HTTPStatus(status).value
    except ValueError:
        return 502


def _as_json(body: bytes) -> str:
    """The Collector's ExportTraceServiceResponse (protobuf) as OTLP/JSON: ``{}``,
    or its partial success."""
    try:
        response = ExportTraceServiceResponse.FromString(body)
    except DecodeError:
        response = ExportTraceServiceResponse()
    return str(json_format.MessageToJson(response, indent=None))
