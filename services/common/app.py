"""The app factory every service's ``create_app`` delegates to.

It wires what all three services have in common, so a service's own
``main.py`` only names its routes, its one dependency and its metrics:

- telemetry (providers built per process, flushed at shutdown),
- problem+json error handlers,
- ``/healthz`` (liveness, no I/O) and ``/readyz`` (the one dependency),
- the trace id of every request in the ``traceresponse`` and ``X-Trace-Id``
  response headers.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, FastAPI, Request
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import Meter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.problems import ProblemError, install_problem_handlers, problem_response
from services.common.settings import ServiceSettings
from services.telemetry import Telemetry, TelemetryExporters, configure_telemetry

_log = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
TRACE_ID_HEADER = "X-Trace-Id"


class Dependency(Protocol):
    """The one thing a service depends on: a downstream service, or Redis."""

    def open(self, app: FastAPI, telemetry: Telemetry) -> AbstractAsyncContextManager[None]:
        """Open it for the app's whole life (storing clients on ``app.state``)."""
        ...

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


def create_service_app(
    spec: ServiceSpec, settings: ServiceSettings, dependency: Dependency, wiring: Wiring
) -> FastAPI:
    name = spec.name
    telemetry = configure_telemetry(name, log_level=settings.log_level, exporters=wiring.exporters)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with dependency.open(app, telemetry):
                _log.info("%s service started", name)
                yield
            _log.info("%s service stopping", name)
        finally:
            telemetry.shutdown()

    app = FastAPI(
        title=f"otel-chat-demo {name}",
        description=spec.description or "",
        version=version("otel-chat-demo"),
        lifespan=lifespan,
        telemetry=telemetry.fastapi_config(excluded_paths=HEALTH_PATHS),
    )
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.state.metrics = spec.metrics(telemetry.meter)
    install_problem_handlers(app)
    app.add_middleware(TraceResponseMiddleware)
    app.include_router(_health_router(dependency))
    app.include_router(spec.router)
    return app


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


class TraceResponseMiddleware:
    """Add the server span's ids to every response (W3C Trace Context Level 2).

    A pure ASGI middleware: Starlette's BaseHTTPMiddleware would cost a task
    and a stream per request for two headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace_headers(message: Message) -> None:
            span_context = trace.get_current_span().get_span_context()
            if message["type"] == "http.response.start" and span_context.is_valid:
                headers = MutableHeaders(scope=message)
                trace_id = trace.format_trace_id(span_context.trace_id)
                span_id = trace.format_span_id(span_context.span_id)
                flags = f"{span_context.trace_flags:02x}"
                headers["traceresponse"] = f"00-{trace_id}-{span_id}-{flags}"
                headers[TRACE_ID_HEADER] = trace_id
            await send(message)

        await self.app(scope, receive, send_with_trace_headers)


def from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that returns ``app.state.<name>`` (set up in the lifespan).

    Use it as ``Annotated[CacheStore, Depends(from_state("store"))]``.
    """

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency
