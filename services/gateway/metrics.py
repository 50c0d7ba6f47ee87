from opentelemetry.metrics import Counter, Meter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """``chat.requests`` by ``chat.outcome`` (see :func:`chat_outcome`), and
    ``gateway.rate_limit.bypassed``: requests served unlimited while the
    rate-limit store was unreachable."""

    def __init__(self, meter: Meter) -> None:
        self.chat_requests = meter.create_counter(
            "chat.requests", unit="{request}", description="Chat requests, by chat.outcome."
        )
        self.rate_limit_bypassed = meter.create_counter(
            "gateway.rate_limit.bypassed",
            unit="{request}",
            description="Requests served without a rate-limit check: the store was unreachable.",
        )


class CountChatOutcomes:
    """Count every POST /chat by outcome, including those refused before the
    route runs (no key, rate limited, body too large, not JSON)."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/chat":
            await self.app(scope, receive, send)
            return
        status = 500  # no response at all is our failure

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self.counter.add(1, {"chat.outcome": chat_outcome(status)})
