"""Every service's middleware, declared once, outermost first.

:func:`middleware` is the whole stack in the order a request passes it (Starlette
builds it from this list as it stands). A service adds its own layers in one place,
:class:`ServiceLayers` (the gateway's: services/gateway/main.py)::

    before_telemetry    a service's: before any span exists     (gateway: untrusted headers)
    FastAPI's native telemetry                                  the server span
    Starlette's ServerErrorMiddleware                           (never reached: see below)
    around              a service's                             (gateway: CORS)
    ShapeResponses      trace ids and a service's headers on every response (asgi.py)
    first               a service's                             (gateway: host, outcomes)
    ServiceLogContext   log records -> this service
    DeadlineMiddleware  504 problem when out of time            (deadline.py)
    BodyLimitMiddleware 413 problem (if the service sets a limit)
    UnhandledErrors     500 problem, logged once
    SuppressInstrumentation   untraced requests: no span inside
    SelfFaultMiddleware faults on purpose                        (faults.py)
    exception handlers, routes
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.instrumentation.utils import suppress_instrumentation
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.asgi import (
    HttpMiddleware,
    ResponseHeaders,
    ShapeResponses,
    response_status,
    trace_headers,
)
from services.common.deadline import DeadlineMiddleware
from services.common.faults import Faults, SelfFaultMiddleware
from services.common.health import HEALTH_PATHS
from services.common.problems import problem_response, unhandled_problem
from services.telemetry import Telemetry


@dataclass(frozen=True, kw_only=True)
class ServiceLayers:
    """A service's own layers, each list outermost first (see the module docstring)."""

    before_telemetry: Sequence[Middleware] = ()
    around: Sequence[Middleware] = ()
    # Added to every response by ShapeResponses (after the trace ids).
    headers: Sequence[ResponseHeaders] = ()
    first: Sequence[Middleware] = ()


@dataclass(frozen=True)
class Untraced:
    """Requests that get no span at all: exact paths, and path prefixes."""

    paths: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, path: str) -> bool:
        return path in self.paths or path.startswith(self.prefixes)


@dataclass(frozen=True)
class BodyLimit:
    """The most a request body may hold: ``max_bytes``, or a path's own in ``by_path``
    (the gateway's relay of browser spans, whose batches outgrow a chat message)."""

    max_bytes: int
    by_path: Mapping[str, int] = field(default_factory=dict)

    def of(self, path: str) -> int:
        return self.by_path.get(path, self.max_bytes)


@dataclass(frozen=True, kw_only=True)
class StackParts:
    """What the shared layers are made with: the factory (app.py) has them all."""

    service: str
    telemetry: Telemetry
    faults: Faults
    untraced: Untraced
    max_budget_seconds: float
    own_budget_seconds: float | None
    body_limit: BodyLimit | None


def middleware(parts: StackParts, layers: ServiceLayers) -> list[Middleware]:
    """The stack inside FastAPI's telemetry, outermost first."""
    return [
        *layers.around,
        Middleware(ShapeResponses, headers=[trace_headers, *layers.headers]),
        *layers.first,
        Middleware(ServiceLogContext, telemetry=parts.telemetry),
        Middleware(
            DeadlineMiddleware,
            service=parts.service,
            max_budget_seconds=parts.max_budget_seconds,
            own_budget_seconds=parts.own_budget_seconds,
        ),
        *([Middleware(BodyLimitMiddleware, limit=parts.body_limit)] if parts.body_limit else []),
        Middleware(UnhandledErrors),
        Middleware(SuppressInstrumentation, untraced=parts.untraced),
        Middleware(SelfFaultMiddleware, faults=parts.faults, exempt=HEALTH_PATHS),
    ]


class ServiceLogContext:
    """Log records written while this app handles a request are this service's
    (see telemetry: in the unit tests several apps share one process)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.telemetry.log_context():
            await self.app(scope, receive, send)


class BodyLimitMiddleware(HttpMiddleware):
    """A request body over its limit is a 413 problem, refused before it is parsed.

    A declared ``Content-Length`` over the limit is refused before a byte is read;
    a chunked body as soon as it passes the limit. (FastAPI's own ``max_body_size``
    answers a declared oversize with plain text from outside every middleware.)
    """

    def __init__(self, app: ASGIApp, limit: BodyLimit) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes = self.limit.of(scope["path"])
        detail = f"The request body is larger than {max_bytes} bytes."
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            response = problem_response(413, "Content Too Large", detail)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                # An HTTPException, so FastAPI's body reader lets it through to
                # the problem handlers (it turns other errors into a 400).
                raise HTTPException(413, detail)
            return message

        await self.app(scope, receive_within_limit, send)


class UnhandledErrors(HttpMiddleware):
    """An unexpected exception becomes a 500 problem here, inside the other middleware.

    Left to Starlette, its ServerErrorMiddleware answers from outside every
    middleware (the 500 would lack CORS and trace headers) and then re-raises
    (a second, unlinked traceback in the server's log). Here the exception is
    recorded on the server span and logged once, with the trace id.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if response_status(scope) is not None:  # too late for another response
                raise
            response = unhandled_problem(scope["method"], scope["path"], exc)
            await response(scope, receive, send)


class SuppressInstrumentation(HttpMiddleware):
    """No span inside an untraced request either (its Redis or HTTP calls): without
    the server span, each would start a trace of its own."""

    def __init__(self, app: ASGIApp, untraced: Untraced) -> None:
        super().__init__(app)
        self.untraced = untraced

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in self.untraced:
            await self.app(scope, receive, send)
            return
        with suppress_instrumentation():
            await self.app(scope, receive, send)
