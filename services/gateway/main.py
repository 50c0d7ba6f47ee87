"""The gateway: the public API (auth, rate limit, CORS) in front of the chat service,
and the chat page whose traces start in the browser."""

from fastapi import APIRouter
from fastapi.middleware.cors import CORSMiddleware

from services.common.app import (
    HEALTH_PATHS,
    PRODUCTION,
    TRACE_ID_HEADER,
    ServiceApp,
    ServiceSpec,
    Wiring,
    create_service_app,
)
from services.common.http_client import Downstream
from services.common.models import IDEMPOTENCY_KEY_HEADER
from services.gateway import otlp, page, routes
from services.gateway.edge import (
    AllowedHosts,
    IncomingTraceContext,
    LinkClientContext,
    RecordClientAddress,
    ResponseHeaders,
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


def create_app(settings: GatewaySettings | None = None, wiring: Wiring = PRODUCTION) -> ServiceApp:
    settings = settings or GatewaySettings()
    chat = Downstream("chat", [str(url) for url in settings.chat_url], settings, wiring.transport)
    app = create_service_app(
        GATEWAY,
        settings,
        chat,
        wiring,
        resources=[RateLimitStore(settings), otlp.TelemetryRelay(settings)],
        max_body_bytes=settings.max_body_bytes,
        max_body_bytes_by_path={otlp.OTLP_TRACES_PATH: settings.otlp_max_body_bytes},
        own_budget_seconds=settings.request_budget_seconds,
    )
    app.mount(page.ASSETS_PATH, page.page_assets(), name="page-assets")
    trust = settings.trust_incoming_trace_context
    app.add_edge_middleware(lambda inner: IncomingTraceContext(inner, trust_traceparent=trust))
    # Each add_middleware wraps the ones before it: CORS ends up outermost.
    app.add_middleware(RecordClientAddress)
    app.add_middleware(LinkClientContext)
    app.add_middleware(CountChatOutcomes, counter=app.state.metrics.chat_requests)
    # Outside the chat's own middleware (a request for another host is not a chat
    # request to count), inside ResponseHeaders (its 400 is no-store and nosniff too).
    app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts, exempt=HEALTH_PATHS)
    app.add_middleware(ResponseHeaders)
    app.add_middleware(
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
    return app
