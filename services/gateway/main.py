"""The gateway: the public API (auth, rate limit, CORS) in front of the chat service,
and the chat page whose traces start in the browser."""

from fastapi import APIRouter
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from services.common.app import NETWORK, Outbound, ServiceApp, ServiceSpec, create_service_app
from services.common.asgi import TRACE_ID_HEADER
from services.common.health import HEALTH_PATHS
from services.common.http_client import Downstream
from services.common.middleware import BodyLimit, ServiceLayers
from services.common.models import IDEMPOTENCY_KEY_HEADER
from services.gateway import otlp, page, routes
from services.gateway.edge import (
    AllowedHosts,
    ClientOnTheServerSpan,
    IncomingTraceContext,
    edge_headers,
)
from services.gateway.metrics import CountChatOutcomes, GatewayMetrics
from services.gateway.rate_limit import RateLimitStore
from services.gateway.security import API_KEY_HEADER
from services.gateway.settings import GatewaySettings

_router = APIRouter()
for _routes in (routes.router, page.router, otlp.router):
    _router.include_router(_routes)

GATEWAY = ServiceSpec(
    "gateway",
    __doc__,
    _router,
    GatewayMetrics,
    untraced_paths=page.UNTRACED_PATHS | {otlp.OTLP_TRACES_PATH},
    untraced_prefixes=page.UNTRACED_PREFIXES,
    edge=True,
)


def create_app(settings: GatewaySettings | None = None, outbound: Outbound = NETWORK) -> ServiceApp:
    settings = settings or GatewaySettings()
    chat = Downstream("chat", [str(url) for url in settings.chat_url], settings, outbound.transport)
    app = create_service_app(
        GATEWAY,
        settings,
        outbound,
        calls=chat,
        uses=[RateLimitStore(settings), otlp.TelemetryRelay(settings)],
        layers=_edge_layers(settings),
        body_limit=BodyLimit(
            settings.max_body_bytes, {otlp.OTLP_TRACES_PATH: settings.otlp_max_body_bytes}
        ),
        own_budget_seconds=settings.request_budget_seconds,
    )
    app.mount(page.ASSETS_PATH, page.page_assets(), name="page-assets")
    return app


def _edge_layers(settings: GatewaySettings) -> ServiceLayers:
    """The gateway's middleware, where services/common/middleware.py places it."""
    cors = Middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET", "POST"],
        allow_headers=[
            "Content-Type",
            API_KEY_HEADER,
            IDEMPOTENCY_KEY_HEADER,
            "traceparent",
            "tracestate",
        ],
        expose_headers=[TRACE_ID_HEADER, "traceresponse", "RateLimit", "RateLimit-Policy"],
    )
    trust = settings.trust_incoming_trace_context
    return ServiceLayers(
        before_telemetry=[Middleware(IncomingTraceContext, trust_traceparent=trust)],
        around=[cors],  # it answers preflights itself
        headers=[edge_headers],
        first=[
            # Before counting: a request for another host is no chat request.
            Middleware(AllowedHosts, hosts=settings.allowed_hosts, exempt=HEALTH_PATHS),
            Middleware(CountChatOutcomes),
            Middleware(ClientOnTheServerSpan),
        ],
    )
