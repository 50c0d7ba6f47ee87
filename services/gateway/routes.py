import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import APIKeyHeader
from opentelemetry import trace
from pydantic import BaseModel

from services.common.app import from_state
from services.common.http_client import ServiceClient
from services.common.models import ChatHistory, Message, SessionId
from services.common.problems import ProblemError
from services.gateway.metrics import GatewayMetrics
from services.gateway.security import API_KEY_HEADER, RateLimiter, client_for_key
from services.gateway.settings import GatewaySettings
from services.telemetry import baggage_entries

router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)

ChatClient = Annotated[ServiceClient, Depends(from_state("chat_client"))]
Metrics = Annotated[GatewayMetrics, Depends(from_state("metrics"))]
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


async def authenticate(
    request: Request, api_key: Annotated[str | None, Security(_api_key_header)]
) -> str:
    """The caller's client id; 401 without a known key, 429 over the rate limit."""
    settings: GatewaySettings = request.app.state.settings
    client_id = client_for_key(api_key, settings.api_keys)
    rate_limiter: RateLimiter = request.app.state.rate_limiter
    rate_limiter.check(client_id)
    trace.get_current_span().set_attribute("client.id", client_id)
    return client_id


ClientId = Annotated[str, Depends(authenticate)]


class ChatRequest(BaseModel):
    message: Message
    session_id: SessionId | None = None


class ChatResponse(BaseModel):
    session_id: str
    reply: str
    cached: bool
    trace_id: str


@router.post("/chat", summary="Send a message; start a session by sending none")
async def chat(
    body: ChatRequest, client_id: ClientId, chat_client: ChatClient, metrics: Metrics
) -> ChatResponse:
    # Baggage carries the client id to every downstream span (see telemetry).
    with baggage_entries({"client.id": client_id}):
        try:
            response = await chat_client.request("POST", "/replies", json=body.model_dump())
        except ProblemError as exc:
            outcome = "rejected" if exc.status < 500 else "error"
            metrics.chat_requests.add(1, {"chat.outcome": outcome})
            raise
    metrics.chat_requests.add(1, {"chat.outcome": "ok"})
    _log.info("chat request from client %s answered", client_id)
    span_context = trace.get_current_span().get_span_context()
    return ChatResponse(**response.json(), trace_id=trace.format_trace_id(span_context.trace_id))


@router.get("/chat/{session_id}/history", summary="The turns of a session, oldest first")
async def history(
    session_id: SessionId, client_id: ClientId, chat_client: ChatClient
) -> ChatHistory:
    with baggage_entries({"client.id": client_id}):
        response = await chat_client.request("GET", f"/sessions/{session_id}/history")
    return ChatHistory.model_validate_json(response.content)
