"""Replies, and the sessions whose histories keep them.

A session is the history of a client's turns, stored through the cache service
under the client's id (another client finds nothing there). What bounds it:

- **Idle expiry.** A session expires ``CHAT_SESSION_IDLE_SECONDS`` (a day)
  after its last saved turn; every saved turn renews it, reading does not.
- **Sessions per client.** A client has at most ``CHAT_MAX_SESSIONS_PER_CLIENT``
  live sessions. A new session beyond that evicts the client's least recently
  used one, which from then on is a 404 like any unknown session. Not refusing
  the new one: the chat page forgets its session when its tab closes, so
  abandoned sessions are the usual case, and refusing would lock a client out
  for a day of idle time; evicting costs the session nobody has used longest.
  Either way one client's key cannot hold more than its cap.
- **Turns per session.** A history keeps its newest
  ``CHAT_MAX_TURNS_PER_SESSION`` turns. A turn saved into a full history drops
  the oldest, and every answer from then on says how many were dropped
  (``history_trimmed``): a dropped turn is never silently gone.

A turn is stored once per id (``turn_id``: the client's ``Idempotency-Key``, or
one the gateway made): a ``POST /chat`` retried after its answer was lost finds
its turn stored and answers from it, and the same key for another message is a
422. A new session's id is made from its first turn's id, so the retry of a
session's first turn finds the session it created instead of starting another.
Appends are therefore safe to retry, and are retried like reads.

Reading a history is a page at a time, oldest first: at most
``HISTORY_PAGE_MAX`` (services/common/models.py) turns, and a cursor to the next page.
"""

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import Annotated, Any

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
    HISTORY_PAGE_DEFAULT,
    IDEMPOTENCY_KEY_HEADER,
    ITEM_ID_PATTERN,
    ChatHistory,
    ChatReply,
    ChatTurn,
    HistoryCursor,
    HistoryLimit,
    Message,
    SessionId,
)
from services.common.problems import DownstreamError, NotFoundError, ProblemError
from services.telemetry import Telemetry, session_pseudonym

router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)

CacheClient = Annotated[ServiceClient, Depends(from_state("cache_client"))]
Settings = Annotated[ChatSettings, Depends(from_state("settings"))]
Metrics = Annotated[ChatMetrics, Depends(from_state("metrics"))]
AppTelemetry = Annotated[Telemetry, Depends(from_state("telemetry"))]
# Whose session: set by the gateway after authentication.
ClientId = Annotated[str, Header(alias=CLIENT_ID_HEADER, pattern=CLIENT_ID_PATTERN)]
# The turn's id, from the gateway (which validated the client's, or made one).
TurnIdHeader = Annotated[str | None, Header(alias=IDEMPOTENCY_KEY_HEADER, pattern=ITEM_ID_PATTERN)]


class ReplyRequest(BaseModel):
    message: Message
    session_id: SessionId | None = None


class Degradation:
    """What a reply had to do without, when the cache service failed.

    The policy: a reply never depends on the cache, so it is always given.
    A failed lookup or store means no caching; a failed history write (Redis
    down, or full and refusing writes), or a session that could not be checked,
    means the turn is not saved, and the answer says so (history_saved=false).
    Each is recorded on the failing span, the server span, a metric and a
    WARNING log.
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
    turn_id: TurnIdHeader = None,
) -> ChatReply:
    started = perf_counter()
    degradation = Degradation(metrics)
    turn_id = turn_id or uuid.uuid4().hex
    may_write = True
    if body.session_id is None:
        session_id = _new_session_id(client_id, turn_id)
    else:
        session_id = body.session_id
        # Checked before anything is written: an unknown session (or another
        # client's) stores nothing.
        try:
            await _require_session(cache, client_id, session_id)
        except DownstreamError as failure:
            degradation.add("history_unsaved", failure)
            may_write = False  # whose session it is cannot be told now
    server_span = trace.get_current_span()
    # Its pseudonym: a session id is a credential (services/telemetry/_pseudonyms.py).
    session = session_pseudonym(session_id)
    server_span.set_attribute("session.id", session)

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

    trace_id = trace.format_trace_id(server_span.get_span_context().trace_id)
    turn = ChatTurn(
        id=turn_id,
        message=body.message,
        reply=reply,
        cached=cached,
        at=datetime.now(UTC),
        trace_id=trace_id,
    )
    saved, trimmed = False, 0
    if may_write:
        try:
            stored = await _append_turn(
                cache, settings, client_id, session_id, turn, new=body.session_id is None
            )
        except DownstreamError as failure:
            degradation.add("history_unsaved", failure)
        else:
            saved, trimmed = True, stored.trimmed
            if stored.first is not None:  # a retry: answer as the first time
                reply, cached = stored.first.reply, stored.first.cached
    attributes = {"cache.hit": cached}
    _log.info("replied in session %s (cache hit: %s)", session, cached)
    metrics.replies.add(1, attributes)
    metrics.reply_latency.record(perf_counter() - started, attributes)
    if degradation.reasons:
        server_span.set_attribute("chat.degraded", True)
        server_span.set_attribute("chat.degraded.reasons", sorted(set(degradation.reasons)))
    return ChatReply(
        session_id=session_id,
        turn_id=turn_id,
        reply=reply,
        cached=cached,
        degraded=bool(degradation.reasons),
        history_saved=saved,
        history_trimmed=trimmed,
    )


@router.get("/sessions/{session_id}/history", summary="A page of a session's turns, oldest first")
async def read_history(
    session_id: SessionId,
    client_id: ClientId,
    cache: CacheClient,
    limit: HistoryLimit = HISTORY_PAGE_DEFAULT,
    cursor: HistoryCursor = None,
) -> ChatHistory:
    params: dict[str, Any] = {"count": limit}
    if cursor is not None:
        params["cursor"] = cursor
    try:
        response = await cache.request("GET", _history_path(client_id, session_id), params=params)
    except NotFoundError as exc:
        raise _unknown(session_id) from exc
    page = response.json()
    return ChatHistory(
        session_id=session_id,
        turns=[ChatTurn.model_validate_json(value) for value in page["values"]],
        trimmed=page["trimmed"],
        next_cursor=page["next_cursor"],
    )


def _new_session_id(client_id: str, turn_id: str) -> str:
    """A new session's id, made from its first turn's id (see the module's
    docstring); 32 hex digits, as unguessable as the turn id it is made from."""
    return hashlib.sha256(f"{client_id}\n{turn_id}".encode()).hexdigest()[:32]


def _history_path(client_id: str, session_id: str) -> str:
    """A session's turns are stored under its owner's client id: another client
    asking for it finds nothing there, exactly as for a session that never was."""
    return f"/lists/history:{client_id}:{session_id}"


def _unknown(session_id: str) -> NotFoundError:
    return NotFoundError(f"Unknown session {session_id!r}.")


async def _require_session(cache: ServiceClient, client_id: str, session_id: str) -> None:
    try:
        await cache.request("GET", f"{_history_path(client_id, session_id)}/length")
    except NotFoundError as exc:
        raise _unknown(session_id) from exc


@dataclass(frozen=True)
class _Stored:
    """A saved turn: how many older turns its history has dropped, and for a
    retry the turn saved first under its id."""

    trimmed: int
    first: ChatTurn | None


async def _append_turn(
    cache: ServiceClient,
    settings: ChatSettings,
    client_id: str,
    session_id: str,
    turn: ChatTurn,
    *,
    new: bool,
) -> _Stored:
    """One cache call (one Redis script): store the turn once per id, renew the
    session's idle time, trim it, and keep the client within its cap of sessions.
    An existing session is only appended to while it exists: one that expired
    or was evicted since it was checked is a 404, never recreated."""
    try:
        response = await cache.request(
            "POST",
            _history_path(client_id, session_id),
            idempotent=True,  # stored once per item_id
            json={
                "value": turn.model_dump_json(),
                "item_id": turn.id,
                "ttl_seconds": settings.session_idle_seconds,
                "max_length": settings.max_turns_per_session,
                "must_exist": not new,
                "group": {
                    "key": f"sessions:{client_id}",
                    "max_lists": settings.max_sessions_per_client,
                },
            },
        )
    except NotFoundError as exc:
        raise _unknown(session_id) from exc
    result = response.json()
    span = trace.get_current_span()
    if result["evicted"]:
        span.set_attribute("chat.sessions.evicted", result["evicted"])
        _log.info("client %s over its session cap: its least recent session evicted", client_id)
    if result["appended"]:
        return _Stored(result["trimmed"], None)
    first = ChatTurn.model_validate_json(result["stored"])
    span.set_attribute("chat.turn.replayed", True)
    if first.message != turn.message:
        raise ProblemError(
            422, f"This {IDEMPOTENCY_KEY_HEADER} was used for another message in this session."
        )
    return _Stored(result["trimmed"], first)


async def _cached_reply(cache: ServiceClient, key: str) -> str | None:
    try:
        response = await cache.request("GET", f"/cache/{key}")
    except NotFoundError:
        return None
    value: str = response.json()["value"]
    return value
