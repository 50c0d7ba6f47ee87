"""The chat service: a toy assistant whose replies are cached through the cache service.

Run: ``uvicorn services.chat.main:create_app --factory --port 8001``
"""

import httpx
from fastapi import FastAPI

from services.chat.metrics import ChatMetrics
from services.chat.routes import router
from services.chat.settings import ChatSettings
from services.common.app import create_service_app
from services.common.http_client import Downstream
from services.telemetry import TelemetryExporters


def create_app(
    settings: ChatSettings | None = None,
    *,
    exporters: TelemetryExporters | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or ChatSettings()
    cache = Downstream("cache", str(settings.cache_url), settings, transport)
    return create_service_app(
        name="chat",
        description="Replies to messages; the same message again is a cache hit.",
        settings=settings,
        router=router,
        resources=cache.open,
        readiness=cache.check_ready,
        metrics=ChatMetrics.create,
        exporters=exporters,
    )
