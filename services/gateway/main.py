"""The gateway: the public API (auth, rate limit, CORS) in front of the chat service."""

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.common.app import PRODUCTION, TRACE_ID_HEADER, ServiceSpec, Wiring, create_service_app
from services.common.http_client import Downstream
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes import router
from services.gateway.security import API_KEY_HEADER, RateLimiter
from services.gateway.settings import GatewaySettings

GATEWAY = ServiceSpec("gateway", __doc__, router, GatewayMetrics)


def create_app(settings: GatewaySettings | None = None, wiring: Wiring = PRODUCTION) -> FastAPI:
    settings = settings or GatewaySettings()
    chat = Downstream("chat", str(settings.chat_url), settings, wiring.transport)
    app = create_service_app(GATEWAY, settings, chat, wiring)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", API_KEY_HEADER, "traceparent", "tracestate", "baggage"],
        expose_headers=[TRACE_ID_HEADER, "traceresponse"],
    )
    return app
