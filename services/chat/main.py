"""The chat service: a toy assistant whose replies are cached through the cache service."""

from fastapi import FastAPI

from services.chat.metrics import ChatMetrics
from services.chat.routes import router
from services.chat.settings import ChatSettings
from services.common.app import PRODUCTION, ServiceSpec, Wiring, create_service_app
from services.common.http_client import Downstream

CHAT = ServiceSpec("chat", __doc__, router, ChatMetrics)


def create_app(settings: ChatSettings | None = None, wiring: Wiring = PRODUCTION) -> FastAPI:
    settings = settings or ChatSettings()
    cache = Downstream(
        "cache", [str(url) for url in settings.cache_url], settings, wiring.transport
    )
    return create_service_app(CHAT, settings, cache, wiring)
