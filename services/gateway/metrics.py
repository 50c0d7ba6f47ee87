from opentelemetry.metrics import Meter
from starlette.types import Receive, Scope, Send

from services.common.asgi import HttpMiddleware, response_status

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
    route runs (no key, rate limited, body too large, not JSON), in the app's own
    ``chat.requests`` (its metrics are built with it: ``app.state.metrics``)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or scope["path"] != "/chat":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            metrics: GatewayMetrics = scope["app"].state.metrics
            # No response at all is our failure.
            outcome = chat_outcome(response_status(scope) or 500)
            metrics.chat_requests.add(1, {"chat.outcome": outcome})
