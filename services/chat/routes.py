import asyncio
import logging
import uuid
from datetime import UTC, datetime
from time import perf_counter
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from opentelemetry import trace
from pydantic import BaseModel

from services.chat.assistant import compose_reply, reply_cache_key, thinking_delay_seconds
from services.chat.metrics import ChatMetrics
from services.chat.settings import ChatSettings
from services.common.app import from_state
from services.common.http_client import ServiceClient
from services.common.models import (
    CLIENT_ID_HEADER,
    CLIENT_ID_PATTERN,
    ChatHistory,
    ChatTurn,
    Message,
    SessionId,
)
from services.common.problems import DownstreamError, NotFoundError
from services.telemetry import Telemetry, session_pseudonym

router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)

CacheClient = Annotated[ServiceClient, Depends(from_state("cache_client"))]
Settings = Annotated[ChatSettings, Depends(from_state("settings"))]
Metrics = Annotated[ChatMetrics, Depends(from_state("metrics"))]
AppTelemetry = Annotated[Telemetry, Depends(from_state("telemetry"))]
# Whose session: set by the gateway after authentication.
ClientId = Annotated[str, Header(alias=CLIENT_ID_HEADER, pattern=CLIENT_ID_PATTERN)]


class ReplyRequest(BaseModel):
    message: Message
    session_id: SessionId | None = None


class ReplyResponse(BaseModel):
    session_id: str
    reply: str
    cached: bool
    # The cache service failed along the way and the reply was made without it.
    degraded: bool = False
    # True only once the turn is stored: never claimed when it was not.
    history_saved: bool


class Degradation:
    """What a reply had to do without, when the cache service failed.

    The policy: a reply never depends on the cache, so it is always given.
    A failed lookup or store means no caching; a failed history write, or a
    session that could not be checked, means the turn is not saved, and the
    answer says so (history_saved=false). Each is recorded on the failing span,
    the server span, a metric and a WARNING log.
    """

    def __init__(self, metrics: ChatMetrics) -> None:
        self.metrics = metrics
        self.reasons: list[str] = []

    def add(self, reason: str, failure: DownstreamError) -> None:
        trace.get_current_span().record_exception(failure)
        self.reasons.append(reason)
        self.metrics.degraded.add(1, {"chat.degraded.reason": reason})
        _log.warning("reply degraded (%s): %s", reason, failure.detail)


@router.post("/replies", summary="Reply to a message, within a session")
async def create_reply(
    body: ReplyRequest,
    client_id: ClientId,
    cache: CacheClient,
    settings: Settings,
    metrics: Metrics,
    telemetry: AppTelemetry,
) -> ReplyResponse:
    started = perf_counter()
    degradation = Degradation(metrics)
    may_write = True
    if body.session_id is None:
        session_id = uuid.uuid4().hex
    else:
        session_id = body.session_id
        # Checked before anything is written: an unknown session (or another
        # client's) stores nothing.
        try:
            await _require_session(cache, client_id, session_id)
        except DownstreamError as failure:
            degradation.add("history_unsaved", failure)
            may_write = False  # whose session it is cannot be told now
    # Its pseudonym: a session id is a credential (services/telemetry/_pseudonyms.py).
    session = session_pseudonym(session_id)
    trace.get_current_span().set_attribute("session.id", session)

    tracer = telemetry.tracer
    key = reply_cache_key(body.message)
    with tracer.start_as_current_span("chat.cache_lookup") as lookup:
        try:
            reply = await _cached_reply(cache, key)
        except DownstreamError as failure:
            degradation.add("cache_unavailable", failure)
            lookup.set_status(trace.StatusCode.ERROR, failure.detail)
            reply = None
        cached = reply is not None
        lookup.set_attribute("cache.hit", cached)
    if reply is None:
        delay = thinking_delay_seconds(
            body.message,
            base_ms=settings.thinking_base_ms,
            per_char_ms=settings.thinking_per_char_ms,
            max_ms=settings.thinking_max_ms,
        )
        with tracer.start_as_current_span(
            "chat.generate_reply",
            attributes={"chat.message.length": len(body.message), "chat.thinking.ms": delay * 1000},
        ):
            await asyncio.sleep(delay)
            reply = compose_reply(body.message)
        if not degradation.reasons:
            try:
                await cache.request(
                    "PUT",
                    f"/cache/{key}",
                    json={"value": reply, "ttl_seconds": settings.reply_ttl_seconds},
                )
            except DownstreamError as failure:
                degradation.add("cache_unavailable", failure)

    trace_id = trace.format_trace_id(trace.get_current_span().get_span_context().trace_id)
    turn = ChatTurn(
        message=body.message, reply=reply, cached=cached, at=datetime.now(UTC), trace_id=trace_id
    )
    saved = False
    if may_write:
        try:
            # A POST, never retried blindly: a retry after a lost answer could
            # store the turn twice.
            await cache.request(
                "POST", _history_path(client_id, session_id), json={"value": turn.model_dump_json()}
            )
            saved = True
        except DownstreamError as failure:
            degradation.add("history_unsaved", failure)
    attributes = {"cache.hit": cached}
    _log.info("replied in session %s (cache hit: %s)", session, cached)
    metrics.replies.add(1, attributes)
    metrics.reply_latency.record(perf_counter() - started, attributes)
    if degradation.reasons:
        server_span = trace.get_current_span()
        server_span.set_attribute("chat.degraded", True)
        server_span.set_attribute("chat.degraded.reasons", sorted(set(degradation.reasons)))
    return ReplyResponse(
        session_id=session_id,
        reply=reply,
        cached=cached,
        degraded=bool(degradation.reasons),
        history_saved=saved,
    )


@router.get("/sessions/{session_id}/history", summary="The turns of a session, oldest first")
async def read_history(
    session_id: SessionId, client_id: ClientId, cache: CacheClient
) -> ChatHistory:
    values = await _history_values(cache, client_id, session_id)
    return ChatHistory(
        session_id=session_id, turns=[ChatTurn.model_validate_json(value) for value in values]
    )


def _history_path(client_id: str, session_id: str) -> str:
    """A session's turns are stored under its owner's client id: another client
    asking for it finds nothing there, exactly as for a session that never was."""
    return f"/lists/history:{client_id}:{session_id}"


async def _require_session(cache: ServiceClient, client_id: str, session_id: str) -> None:
    await _history_values(cache, client_id, session_id, last=1)


async def _history_values(
    cache: ServiceClient, client_id: str, session_id: str, *, last: int | None = None
) -> list[str]:
    """The stored turns (JSON) of a session, or its ``last`` ones; 404 if unknown."""
    params = {"last": last} if last else None
    try:
        response = await cache.request("GET", _history_path(client_id, session_id), params=params)
    except NotFoundError as exc:
        raise NotFoundError(f"Unknown session {session_id!r}.") from exc
    values: list[str] = response.json()["values"]
    return values


async def _cached_reply(cache: ServiceClient, key: str) -> str | None:
    try:
        response = await cache.request("GET", f"/cache/{key}")
    except NotFoundError:
        return None
    value: str = response.json()["value"]
    return value
