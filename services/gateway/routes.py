import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import APIKeyHeader
from opentelemetry import trace
from pydantic import BaseModel

from services.common.app import from_state
from services.common.http_client import ServiceClient
from services.common.models import CLIENT_ID_HEADER, ChatHistory, Message, SessionId
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


class ChatResponse(BaseModel):
    session_id: str
    reply: str
    cached: bool
    # Made without the cache (it failed): slower, and maybe not saved.
    degraded: bool
    # False: this turn is not in the session's history (and a new session whose
    # first turn was not saved does not exist).
    history_saved: bool
    trace_id: str


@router.post("/chat", summary="Send a message; start a session by sending none", responses=_ERRORS)
async def chat(body: ChatRequest, client_id: ClientId, chat_client: ChatClient) -> ChatResponse:
    # Baggage carries the client id to every downstream span (see telemetry);
    # the header tells the chat service whose session this is.
    with baggage_entries({"client.id": client_id}):
        response = await chat_client.request(
            "POST", "/replies", json=body.model_dump(), headers={CLIENT_ID_HEADER: client_id}
        )
    span_context = trace.get_current_span().get_span_context()
    reply = ChatResponse(**response.json(), trace_id=trace.format_trace_id(span_context.trace_id))
    _log.info("chat request from client %s answered", client_id)
    return reply


@router.get(
    "/chat/{session_id}/history",
    summary="The turns of one of your sessions, oldest first",
    responses=_ERRORS,
)
async def history(
    session_id: SessionId, client_id: ClientId, chat_client: ChatClient
) -> ChatHistory:
    with baggage_entries({"client.id": client_id}):
        response = await chat_client.request(
            "GET", f"/sessions/{session_id}/history", headers={CLIENT_ID_HEADER: client_id}
        )
    return ChatHistory.model_validate_json(response.content)
