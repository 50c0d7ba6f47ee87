"""Request and response shapes that more than one service speaks."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, StringConstraints

MAX_MESSAGE_CHARS = 2_000

Message = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS)
]
# Gateway -> chat: whose request this is (the client id the API key maps to).
# Internal: the gateway sets it, and never forwards a client's own headers.
CLIENT_ID_HEADER = "X-Client-Id"
# Client ids name callers in telemetry and key their sessions in Redis: short,
# and safe in a Redis key.
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

# Session ids are issued by the chat service (uuid4 hex); anything else is a typo.
SessionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class ChatTurn(BaseModel):
    message: str
    reply: str
    cached: bool
    at: datetime
    # The trace that made the turn (the chat page links it); None in turns stored
    # before it was recorded.
    trace_id: str | None = None


class ChatHistory(BaseModel):
    session_id: str
    turns: list[ChatTurn]
