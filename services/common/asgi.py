"""What every middleware of the services is built from, and the one that shapes responses.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a
stream per request.

Only :class:`ShapeResponses` wraps ``send``. When a response starts, it notes the
status in the request's scope and adds the headers every response of the service
carries (its trace id, and whatever the service adds: the gateway's security and
rate-limit headers). Middleware further in that needs to know whether, or how, a
response started (a deadline, the 500 handler, the gateway's outcome counter) reads
:func:`response_status` after the app returns, instead of wrapping ``send`` again:
the start message passes through ``ShapeResponses`` on its way out before the
inner ``await send(...)`` returns.
"""

from collections.abc import Callable, Mapping, Sequence

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACE_ID_HEADER = "X-Trace-Id"
_STATUS = "services.response_status"

# The headers a response gets, given its request's scope (an empty mapping: none).
ResponseHeaders = Callable[[Scope], Mapping[str, str]]


class HttpMiddleware:
    """Middleware for HTTP requests; anything else (lifespan) passes straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


def response_status(scope: Scope) -> int | None:
    """The status of the request's response once it has started; None before."""
    status: int | None = scope.get(_STATUS)
    return status


class ShapeResponses(HttpMiddleware):
    """Note each response's status and add ``headers``' headers to it, keeping any a
    response already has (a page's own ``Cache-Control``)."""

    def __init__(self, app: ASGIApp, headers: Sequence[ResponseHeaders]) -> None:
        super().__init__(app)
        self.headers = tuple(headers)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def shaped(message: Message) -> None:
            if message["type"] == "http.response.start":
                scope[_STATUS] = message["status"]
                response_headers = MutableHeaders(scope=message)
                for source in self.headers:
                    for name, value in source(scope).items():
                        response_headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, shaped)


def trace_headers(scope: Scope) -> dict[str, str]:
    """The server span's ids (W3C Trace Context Level 2 ``traceresponse``, and
    ``X-Trace-Id`` for people), so any response can be looked up in the trace store."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    trace_id = trace.format_trace_id(span_context.trace_id)
    span_id = trace.format_span_id(span_context.span_id)
    flags = f"{span_context.trace_flags:02x}"
    return {"traceresponse": f"00-{trace_id}-{span_id}-{flags}", TRACE_ID_HEADER: trace_id}
