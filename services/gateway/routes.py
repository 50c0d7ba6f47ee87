import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Security
from fastapi.security import APIKeyHeader
from opentelemetry import trace
from pydantic import BaseModel

from services.common import models
from services.common.app import from_state
from services.common.http_client import ServiceClient
from services.common.models import CLIENT_ID_HEADER, ChatHistory, ChatReply, Message, SessionId
from services.common.problems import ProblemError, documented
from services.gateway.edge import RESPONSE_HEADERS_STATE
from services.gateway.rate_limit import PER_CLIENT, RateLimits
from services.gateway.security import API_KEY_HEADER, client_for_key
from services.gateway.settings import GatewaySettings
from services.telemetry import baggage_entries

router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)

ChatClient = Annotated[ServiceClient, Depends(from_state("chat_client"))]
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": "The quota and its window in seconds (IETF draft)",
    "RateLimit": "Requests remaining and seconds until the window frees up (IETF draft)",
}
# Every error a chat route can answer with, as problem+json.
_ERRORS = documented(
    400,
    401,
    404,
    413,
    422,
    429,
    502,
    503,
    504,
    headers={429: {**_RATE_LIMIT_HEADERS, "Retry-After": "Seconds to wait"}},
)


def authenticated(limit: str = PER_CLIENT) -> Callable[..., Awaitable[str]]:
    """A dependency: the caller's client id, its request counted against ``limit``."""

    async def dependency(
        request: Request, api_key: Annotated[str | None, Security(_api_key_header)]
    ) -> str:
        return await authenticate(request, api_key, limit)

    return dependency


async def authenticate(request: Request, api_key: str | None, limit: str = PER_CLIENT) -> str:
    """The caller's client id. 401 without a known key; 429 over the client's rate
    limit, and from an address over its failed-authentication budget for any key
    but one of a client known there (rate_limit.py says why)."""
    settings: GatewaySettings = request.app.state.settings
    rate_limits: RateLimits = request.app.state.rate_limits
    # The TCP peer (a proxy's X-Forwarded-For only if uvicorn trusts that proxy).
    host = request.client.host if request.client else None
    try:
        client_id = client_for_key(api_key, settings.api_keys)
    except ProblemError:
        await rate_limits.count_failure(host)  # 429 instead, past the budget
        raise
    # Before the rate limits: a throttled request's span names who was throttled.
    trace.get_current_span().set_attribute("client.id", client_id)
    quota = await rate_limits.admit(client_id, host, limit)
    if quota is not None:  # on every response from here on, errors included
        setattr(request.state, RESPONSE_HEADERS_STATE, quota.headers())
    return client_id


ClientId = Annotated[str, Depends(authenticated())]


class ChatRequest(BaseModel):
    message: Message
    session_id: SessionId | None = None


class ChatResponse(ChatReply):
    trace_id: str


# The IETF draft's Idempotency-Key is a structured-field string ("..."); a bare
# token is accepted too, as most APIs that take the header do.
_IDEMPOTENCY_KEY = models.ITEM_ID_PATTERN.strip("^$")
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=models.IDEMPOTENCY_KEY_HEADER,
        pattern=f'^(?:"{_IDEMPOTENCY_KEY}"|{_IDEMPOTENCY_KEY})$',
        description="Your id for this turn (1-64 of A-Z a-z 0-9 _ -, optionally quoted): a "
        "POST /chat retried with it stores the turn once and answers as the first time "
        "did; the same key for another message in the session is a 422.",
    ),
]


@router.post("/chat", summary="Send a message; start a session by sending none", responses=_ERRORS)
async def chat(
    body: ChatRequest,
    client_id: ClientId,
    chat_client: ChatClient,
    idempotency_key: IdempotencyKey = None,
) -> ChatResponse:
    # The turn's id: the client's, or one made here, so that a retry of the call
    # to chat (chat unreachable, its connection reset) cannot store it twice.
    turn_id = idempotency_key.strip('"') if idempotency_key else uuid.uuid4().hex
    # Baggage carries the client id to every downstream span (see telemetry);
    # the header tells the chat service whose session this is.
    with baggage_entries({"client.id": client_id}):
        response = await chat_client.request(
            "POST",
            "/replies",
            idempotent=True,  # the chat service stores a turn once per id
            json=body.model_dump(),
            headers={CLIENT_ID_HEADER: client_id, models.IDEMPOTENCY_KEY_HEADER: turn_id},
        )
    span_context = trace.get_current_span().get_span_context()
    reply = ChatResponse(**response.json(), trace_id=trace.format_trace_id(span_context.trace_id))
    _log.info("chat request from client %s answered", client_id)
    return reply


@router.get(
    "/chat/{session_id}/history",
    summary="A page of the turns of one of your sessions, oldest first",
    description=f"""Turns oldest first, at most `limit` (default {models.HISTORY_PAGE_DEFAULT},
at most {models.HISTORY_PAGE_MAX}). For the turns after a page, pass its `next_cursor` as `cursor`;
`next_cursor` is null once a page reaches the newest turn. A cursor is opaque and stays
valid: turns dropped from a full history meanwhile are skipped (the page starts at the
oldest kept), later turns are never missed or repeated. `trimmed` counts the turns no
longer kept. A session expires after a time without turns (a day by default), or when
its client starts more sessions than it may keep: from then on it is a 404.""",
    responses=_ERRORS,
)
async def history(
    session_id: SessionId,
    client_id: ClientId,
    chat_client: ChatClient,
    limit: models.HistoryLimit = models.HISTORY_PAGE_DEFAULT,
    cursor: models.HistoryCursor = None,
) -> ChatHistory:
    params: dict[str, str | int] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    with baggage_entries({"client.id": client_id}):
        response = await chat_client.request(
            "GET",
            f"/sessions/{session_id}/history",
            params=params,
            headers={CLIENT_ID_HEADER: client_id},
        )
    return ChatHistory.model_validate_json(response.content)
