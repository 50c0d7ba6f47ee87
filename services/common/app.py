"""The app factory every service's ``create_app`` delegates to.

It wires what the services have in common, so a service's own ``main.py`` only
names its routes, what it calls, its metrics and its own middleware layers:

- telemetry (providers built per process, flushed at shutdown: services/telemetry),
- the middleware stack, declared once in services/common/middleware.py,
- problem+json error handlers (services/common/problems.py),
- ``/healthz`` and ``/readyz`` (services/common/health.py),
- the admin endpoints on a listener of their own, when an admin key is set
  (services/common/admin.py): never on the service's port,
- Swagger UI at ``/docs`` from the package's own files (services/common/web.py),
- no span at all for probes, docs and what a service declares untraced.
"""

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, FastAPI, Request
from opentelemetry.metrics import Meter
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.admin import AdminListener, admin_app
from services.common.faults import Faults
from services.common.health import HEALTH_PATHS, ReadinessCheck, health_router
from services.common.middleware import BodyLimit, ServiceLayers, StackParts, Untraced, middleware
from services.common.problems import install_problem_handlers
from services.common.settings import ServiceSettings
from services.common.web import DOCS_PATHS, DOCS_PREFIXES, mount_docs
from services.registry import by_name
from services.telemetry import Telemetry, TelemetryExporters, configure_telemetry

_log = logging.getLogger(__name__)

# Not traced: probes every few seconds, and the API's own documentation (its page,
# files and document), would bury the real traces (and are no request of the chat's).
UNTRACED_PATHS = HEALTH_PATHS | DOCS_PATHS


class Backing(Protocol):
    """A service this app calls, held open for the app's whole life: an HTTP client of
    a downstream service, a Redis pool, the Collector (what services/registry.py lists
    as what a service calls and uses)."""

    def open(self, app: FastAPI, telemetry: Telemetry) -> AbstractAsyncContextManager[None]:
        """Open it for the app's whole life (storing clients on ``app.state``)."""
        ...


class Callee(Backing, ReadinessCheck, Protocol):
    """The one backing service this app cannot serve without: ``/readyz`` checks it."""


@dataclass(frozen=True, kw_only=True)
class Outbound:
    """Where an app's telemetry and outgoing requests go. The default, the network and
    the OTLP exporters the OTEL_* variables configure; tests replace both."""

    # In-memory exporters instead of OTLP.
    exporters: TelemetryExporters | None = None
    # httpx.ASGITransport(downstream_app) instead of the network: apps chained in one
    # process.
    transport: httpx.AsyncBaseTransport | None = None


# Every process but a test's: the network, and OTLP as the OTEL_* variables say.
NETWORK = Outbound()


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
    """FastAPI, with middleware that runs before its telemetry: ``before_telemetry``,
    outermost first. FastAPI's native telemetry wraps every other middleware, so its
    server span already exists (its parent read from the request's ``traceparent``)
    when they run; these wrap the whole app and can change what a request carries
    before anything reads it."""

    def __init__(self, *, before_telemetry: Sequence[Middleware] = (), **options: Any) -> None:
        super().__init__(**options)
        app: ASGIApp = super().__call__
        for layer in reversed(before_telemetry):
            app = layer.cls(app, *layer.args, **layer.kwargs)
        self._outermost = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._outermost(scope, receive, send)


def create_service_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
    outbound: Outbound,
    *,
    calls: Callee,
    uses: Sequence[Backing] = (),
    layers: ServiceLayers = ServiceLayers(),  # noqa: B008 (frozen: shared safely)
    body_limit: BodyLimit | None = None,
    own_budget_seconds: float | None = None,
) -> ServiceApp:
    """The app of one service; ``/readyz`` checks ``calls``.

    ``uses`` are opened for the app's life too, but readiness does not wait for them:
    the service degrades without them (the gateway's rate-limit store). A body over
    ``body_limit`` is a 413, refused before it is parsed. ``own_budget_seconds``: this
    service starts requests' time budgets (the gateway); the others take theirs from
    the caller (see deadline.py).
    """
    name = spec.name
    telemetry = configure_telemetry(
        name, log_level=settings.log_level, exporters=outbound.exporters, edge=spec.edge
    )
    faults = Faults(settings.faults, telemetry.tracer)
    backing = [calls, *uses]
    if settings.admin_key is not None:
        backing.append(_admin_listener(name, settings, settings.admin_key, faults, telemetry))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            with telemetry.log_context():
                async with AsyncExitStack() as opened:
                    for service in backing:
                        await opened.enter_async_context(service.open(app, telemetry))
                    _log.info("%s service started", name)
                    yield
                _log.info("%s service stopping", name)
        finally:
            telemetry.shutdown()

    untraced = Untraced(
        UNTRACED_PATHS | spec.untraced_paths, DOCS_PREFIXES + spec.untraced_prefixes
    )
    parts = StackParts(
        service=name,
        telemetry=telemetry,
        faults=faults,
        untraced=untraced,
        max_budget_seconds=settings.max_request_budget_seconds,
        own_budget_seconds=own_budget_seconds,
        body_limit=body_limit,
    )
    app = ServiceApp(
        title=f"otel-chat-demo {name}",
        description=spec.description or "",
        version=version("otel-chat-demo"),
        lifespan=lifespan,
        telemetry=telemetry.fastapi_config(
            excluded_paths=untraced.paths, excluded_prefixes=untraced.prefixes
        ),
        before_telemetry=layers.before_telemetry,
        middleware=middleware(parts, layers),
        # Swagger UI from the package's own files instead (mount_docs); no ReDoc.
        docs_url=None,
        redoc_url=None,
    )
    if settings.server_instrumentation == "contrib":
        telemetry.instrument_app_contrib(
            app, excluded_paths=untraced.paths, excluded_prefixes=untraced.prefixes
        )
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.state.metrics = spec.metrics(telemetry.meter)
    app.state.faults = faults
    install_problem_handlers(app)
    app.include_router(health_router(calls))
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


def from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that returns ``app.state.<name>`` (set up in the lifespan).

    Use it as ``Annotated[CacheStore, Depends(from_state("store"))]``. It is
    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop per dependency per request.
    """

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency
