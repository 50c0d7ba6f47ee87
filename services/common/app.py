"""The app factory every service's ``create_app`` delegates to.

It wires what all three services have in common, so a service's own
``main.py`` only names its routes, its dependencies and its metrics:

- telemetry (providers built per process, flushed at shutdown),
- problem+json error handlers, and a 500 that still carries every header,
- ``/healthz`` (liveness, no I/O) and ``/readyz`` (the one dependency),
- the admin endpoints on a listener of their own, when an admin key is set
  (services/common/admin.py): never on the service's port,
- Swagger UI at ``/docs`` from the package's own files (services/common/web.py),
- no span at all for probes, docs and what a service declares untraced,
- the trace id of every request in the ``traceresponse`` and ``X-Trace-Id``
  response headers.

Middleware, outermost first::

    edge middleware (ServiceApp.add_edge_middleware)   before any span exists
    FastAPI's native telemetry                          the server span
    Starlette's ServerErrorMiddleware                   (never reached: see below)
    middleware a service adds (CORS, ...)
    TraceResponseMiddleware                             traceresponse, X-Trace-Id
    ServiceLogContext                                   log records -> this service
    DeadlineMiddleware                                  504 problem when out of time
    BodyLimitMiddleware                                 413 problem (if a limit is set)
    UnhandledErrorMiddleware                            500 problem, logged once
    SuppressInstrumentation                             untraced requests: no span inside
    SelfFaultMiddleware                                 faults on purpose (faults.py)
    exception handlers, routes
"""

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, FastAPI, Request
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import Meter
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.admin import AdminListener, admin_app
from services.common.asgi import HttpMiddleware, WatchedSend
from services.common.deadline import DeadlineMiddleware
from services.common.faults import Faults, SelfFaultMiddleware
from services.common.problems import (
    ProblemError,
    install_problem_handlers,
    problem_response,
    unhandled_problem,
)
from services.common.settings import ServiceSettings
from services.common.web import DOCS_PATHS, DOCS_PREFIXES, mount_docs
from services.registry import by_name
from services.telemetry import Telemetry, TelemetryExporters, configure_telemetry

_log = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
# Not traced: probes every few seconds, and the API's own documentation (its page,
# files and document), would bury the real traces (and are no request of the chat's).
UNTRACED_PATHS = HEALTH_PATHS | DOCS_PATHS
TRACE_ID_HEADER = "X-Trace-Id"


class Resource(Protocol):
    """Something a service opens for its whole life: a client, a pool."""

    def open(self, app: FastAPI, telemetry: Telemetry) -> AbstractAsyncContextManager[None]:
        """Open it for the app's whole life (storing clients on ``app.state``)."""
        ...


class Dependency(Resource, Protocol):
    """The one thing a service cannot serve without: a downstream service, or Redis."""

    async def check_ready(self, app: FastAPI) -> None:
        """Raise (anything) when it is not usable."""
        ...


@dataclass(frozen=True, kw_only=True)
class Wiring:
    """Where an app's telemetry and outgoing requests go; tests replace both."""

    # None: OTLP exporters configured by the OTEL_* environment variables.
    exporters: TelemetryExporters | None = None
    # None: the network. Tests pass httpx.ASGITransport(downstream_app) to
    # chain apps in one process.
    transport: httpx.AsyncBaseTransport | None = None


PRODUCTION = Wiring()


@dataclass(frozen=True)
class ServiceSpec:
    """What makes a service itself; everything else is shared."""

    name: str
    description: str | None  # the OpenAPI description: the service module's docstring
    router: APIRouter
    # Builds the service's instruments; the result is ``app.state.metrics``.
    metrics: Callable[[Meter], object]
    # Requests that get no span, beside health probes and the docs (exact paths,
    # and path prefixes): pages and their assets, relayed telemetry.
    untraced_paths: frozenset[str] = frozenset()
    untraced_prefixes: tuple[str, ...] = ()
    # The service outside clients call: it makes its own sampling decision
    # (services/telemetry/_sampling.py).
    edge: bool = False


class ServiceApp(FastAPI):
    """FastAPI, plus a place for middleware that must run before its telemetry.

    ``add_middleware`` puts middleware inside FastAPI's native telemetry, whose
    server span already exists by then (its parent read from the request's
    ``traceparent`` and ``baggage``). Edge middleware wraps the whole app, so it
    can rewrite what a request carries before anything reads it.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._edge: ASGIApp = partial(FastAPI.__call__, self)

    def add_edge_middleware(self, middleware: Callable[[ASGIApp], ASGIApp]) -> None:
        self._edge = middleware(self._edge)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._edge(scope, receive, send)


def create_service_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
    dependency: Dependency,
    wiring: Wiring,
    *,
    resources: Sequence[Resource] = (),
    max_body_bytes: int | None = None,
    max_body_bytes_by_path: Mapping[str, int] | None = None,
    own_budget_seconds: float | None = None,
) -> ServiceApp:
    """The app of one service; ``/readyz`` checks ``dependency``.

    ``resources`` are opened for the app's life too, but readiness does not wait
    for them: the service degrades without them (the gateway's rate-limit store).
    A body over ``max_body_bytes`` is a 413, refused before it is parsed; a path
    in ``max_body_bytes_by_path`` has a limit of its own instead.
    ``own_budget_seconds``: this service starts requests' time budgets (the
    gateway); the others take theirs from the caller (see deadline.py).
    """
    name = spec.name
    telemetry = configure_telemetry(
        name, log_level=settings.log_level, exporters=wiring.exporters, edge=spec.edge
    )
    faults = Faults(settings.faults, telemetry.tracer)
    if settings.admin_key is not None:
        resources = [
            *resources,
            _admin_listener(name, settings, settings.admin_key, faults, telemetry),
        ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            with telemetry.log_context():
                async with AsyncExitStack() as opened:
                    for resource in (dependency, *resources):
                        await opened.enter_async_context(resource.open(app, telemetry))
                    _log.info("%s service started", name)
                    yield
                _log.info("%s service stopping", name)
        finally:
            telemetry.shutdown()

    untraced = Untraced(
        UNTRACED_PATHS | spec.untraced_paths, DOCS_PREFIXES + spec.untraced_prefixes
    )
    app = ServiceApp(
        title=f"otel-chat-demo {name}",
        description=spec.description or "",
        version=version("otel-chat-demo"),
        lifespan=lifespan,
        telemetry=telemetry.fastapi_config(
            excluded_paths=untraced.paths, excluded_prefixes=untraced.prefixes
        ),
        # Swagger UI from the package's own files instead (mount_docs); no ReDoc.
        docs_url=None,
        redoc_url=None,
    )
    if settings.server_instrumentation == "contrib":
        telemetry.instrument_app_contrib(app, excluded_paths=UNTRACED_PATHS)
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.state.metrics = spec.metrics(telemetry.meter)
    app.state.faults = faults
    install_problem_handlers(app)
    # add_middleware puts each new one outside the ones before it.
    app.add_middleware(SelfFaultMiddleware, faults=app.state.faults, exempt=HEALTH_PATHS)
    app.add_middleware(SuppressInstrumentation, untraced=untraced)
    app.add_middleware(UnhandledErrorMiddleware)
    if max_body_bytes is not None:
        app.add_middleware(
            BodyLimitMiddleware, max_bytes=max_body_bytes, by_path=max_body_bytes_by_path or {}
        )
    app.add_middleware(
        DeadlineMiddleware,
        service=name,
        max_budget_seconds=settings.max_request_budget_seconds,
        own_budget_seconds=own_budget_seconds,
    )
    app.add_middleware(ServiceLogContext, telemetry=telemetry)
    app.add_middleware(TraceResponseMiddleware)
    app.include_router(_health_router(dependency))
    mount_docs(app)
    app.include_router(spec.router)
    return app


def _admin_listener(
    name: str, settings: ServiceSettings, admin_key: str, faults: Faults, telemetry: Telemetry
) -> AdminListener:
    """The admin endpoints of this process, on the admin host and port (by default
    loopback and the service's admin_port in services/registry.py)."""
    app = admin_app(
        name,
        faults,
        telemetry,
        admin_key=admin_key,
        failures_per_minute=settings.admin_failures_per_minute,
    )
    port = by_name(name).admin_port if settings.admin_port is None else settings.admin_port
    return AdminListener(app, settings.admin_host, port)


def _health_router(dependency: Dependency) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process serves requests")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: the one dependency is usable")
    async def readyz(request: Request) -> object:
        try:
            # Not traced: a probe every few seconds would bury the real traces.
            with suppress_instrumentation():
                await dependency.check_ready(request.app)
        except Exception as exc:  # any failure means "not ready", never a 500
            detail = exc.detail if isinstance(exc, ProblemError) else type(exc).__name__
            return problem_response(503, "Service Unavailable", f"Not ready: {detail}")
        return {"status": "ready"}

    return router


@dataclass(frozen=True)
class Untraced:
    """Requests that get no span at all: exact paths, and path prefixes."""

    paths: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, path: str) -> bool:
        return path in self.paths or path.startswith(self.prefixes)


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


class TraceResponseMiddleware(HttpMiddleware):
    """Add the server span's ids to every response (W3C Trace Context Level 2)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, WatchedSend(send, on_start=_add_trace_headers))


def _add_trace_headers(headers: MutableHeaders) -> None:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        trace_id = trace.format_trace_id(span_context.trace_id)
        span_id = trace.format_span_id(span_context.span_id)
        flags = f"{span_context.trace_flags:02x}"
        headers["traceresponse"] = f"00-{trace_id}-{span_id}-{flags}"
        headers[TRACE_ID_HEADER] = trace_id


class ServiceLogContext:
    """Log records written while this app handles a request are this service's
    (see telemetry: in the unit tests several apps share one process)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.telemetry.log_context():
            await self.app(scope, receive, send)


class UnhandledErrorMiddleware(HttpMiddleware):
    """An unexpected exception becomes a 500 problem here, inside the other middleware.

    Left to Starlette, its ServerErrorMiddleware answers from outside every
    middleware (the 500 would lack CORS and trace headers) and then re-raises
    (a second, unlinked traceback in the server's log). Here the exception is
    recorded on the server span and logged once, with the trace id.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        watched = WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if watched.status is not None:  # too late for another response
                raise
            response = unhandled_problem(scope["method"], scope["path"], exc)
            await response(scope, receive, send)


class BodyLimitMiddleware(HttpMiddleware):
    """A request body over ``max_bytes`` is a 413 problem, refused before it is parsed.

    ``by_path`` gives some paths a limit of their own (larger or smaller), e.g.
    the gateway's relay of browser telemetry, whose batches outgrow a chat message.

    A declared ``Content-Length`` over the limit is refused before a byte is read;
    a chunked body as soon as it passes the limit. (FastAPI's own ``max_body_size``
    answers a declared oversize with plain text from outside every middleware.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int, by_path: Mapping[str, int]) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.by_path = dict(by_path)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes = self.by_path.get(scope["path"], self.max_bytes)
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


def from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that returns ``app.state.<name>`` (set up in the lifespan).

    Use it as ``Annotated[CacheStore, Depends(from_state("store"))]``. It is
    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop per dependency per request.
    """

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency
