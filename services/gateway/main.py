"""The gateway: the public API (auth, rate limit, CORS) in front of the chat service.

Run: ``uvicorn services.gateway.main:create_app --factory --port 8000``
"""

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.common.app import TRACE_ID_HEADER, create_service_app
from services.common.http_client import Downstream
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes import router
from services.gateway.security import API_KEY_HEADER, RateLimiter
from services.gateway.settings import GatewaySettings
from services.telemetry import TelemetryExporters


def create_app(
    settings: GatewaySettings | None = None,
    *,
    exporters: TelemetryExporters | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or GatewaySettings()
    chat = Downstream("chat", str(settings.chat_url), settings, transport)
    app = create_service_app(
        name="gateway",
        description="The public chat API. Send your API key in the X-API-Key header.",
        settings=settings,
        router=router,
        resources=chat.open,
        readiness=chat.check_ready,
        metrics=GatewayMetrics.create,
        exporters=exporters,
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", API_KEY_HEADER, "traceparent", "tracestate", "baggage"],
        expose_headers=[TRACE_ID_HEADER, "traceresponse"],
    )
    return app
