from opentelemetry.metrics import Counter, Meter
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import HttpMiddleware, WatchedSend

# chat.outcome of a POST /chat, by response status. 200 is sent only once a
# valid reply has been built and serialized, so "ok" counts only real replies.
_OUTCOMES = {
    200: "ok",
    400: "invalid",
    401: "unauthenticated",
    404: "not_found",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
}


def chat_outcome(status: int) -> str:
    """ok; a rejection by reason (the client's fault); or error (ours or downstream)."""
    return _OUTCOMES.get(status) or ("error" if status >= 500 else "rejected")


class GatewayMetrics:
    """``chat.requests`` by ``chat.outcome`` (see :func:`chat_outcome`).
    (``gateway.rate_limit.bypassed``: see rate_limit.py.)"""

    def __init__(self, meter: Meter) -> None:
        self.chat_requests = meter.create_counter(
            "chat.requests", unit="{request}", description="Chat requests, by chat.outcome."
        )


class CountChatOutcomes(HttpMiddleware):
    """Count every POST /chat by outcome, including those refused before the
    route runs (no key, rate limited, body too large, not JSON)."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        super().__init__(app)
        self.counter = counter

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or scope["path"] != "/chat":
            await self.app(scope, receive, send)
            return
        watched = WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        finally:
            # No response at all is our failure.
            self.counter.add(1, {"chat.outcome": chat_outcome(watched.status or 500)})
