"""Request and response shapes that more than one service speaks."""

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field, StringConstraints

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

# Session ids are issued by the chat service (32 hex digits); anything else is a typo.
SessionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]

# A turn's id: the client's Idempotency-Key (IETF draft
# "The Idempotency-Key HTTP Header Field"), or one the gateway makes; the chat
# service stores a turn once per id. It becomes the id of an item in a cache
# list, so: short, and safe as a Redis sorted-set member (a UUID or ULID fits).
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
ITEM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# A position in a list, as the cache's cursors spell it; opaque to clients.
CURSOR_PATTERN = r"^[0-9]{1,15}$"
# Turns per page of a history: each hop bounds what one request may cost it.
HISTORY_PAGE_DEFAULT = 20
HISTORY_PAGE_MAX = 100
HistoryLimit = Annotated[int, Query(ge=1, le=HISTORY_PAGE_MAX, description="Turns per page")]
HistoryCursor = Annotated[
    str | None,
    Query(pattern=CURSOR_PATTERN, description="A page's next_cursor: the turns after that page"),
]


class ChatTurn(BaseModel):
    # None in turns stored before turns had ids.
    id: str | None = None
    message: str
    reply: str
    cached: bool
    at: datetime
    # The trace that made the turn (the chat page links it); None in turns stored
    # before it was recorded.
    trace_id: str | None = None


class ChatHistory(BaseModel):
    session_id: str
    turns: list[ChatTurn] = Field(description="Oldest first, at most the page's limit")
    trimmed: int = Field(
        description="How many of the session's oldest turns are no longer kept: a "
        "history holds its newest turns only (CHAT_MAX_TURNS_PER_SESSION)"
    )
    next_cursor: str | None = Field(
        description="Pass it as cursor for the turns after these; null: none after them"
    )


class ChatReply(BaseModel):
    """A reply, and what became of its turn (chat -> gateway -> client)."""

    session_id: str
    turn_id: str = Field(
        description="This turn's id: the request's Idempotency-Key, or one the gateway "
        "made. Retried with the same key, POST /chat answers from the turn stored first."
    )
    reply: str
    cached: bool
    degraded: bool = Field(
        default=False, description="Made without the cache (it failed): slower, maybe not saved"
    )
    history_saved: bool = Field(
        description="True: this turn is in the session's history (or was already, for a "
        "retry). False: it is not, and a new session whose first turn was not saved does "
        "not exist."
    )
    history_trimmed: int = Field(
        default=0,
        description="How many of the session's oldest turns have been dropped so far to "
        "keep it within its cap (CHAT_MAX_TURNS_PER_SESSION): 0 until it first overflows, "
        "then one more with every turn saved",
    )
