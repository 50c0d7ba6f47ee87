"""The chat service: a toy assistant whose replies are cached through the cache service."""

from services.chat.metrics import ChatMetrics
from services.chat.routes import router
from services.chat.settings import ChatSettings
from services.common.app import NETWORK, Outbound, ServiceApp, ServiceSpec, create_service_app
from services.common.http_client import Downstream

CHAT = ServiceSpec("chat", __doc__, router, ChatMetrics)


def create_app(settings: ChatSettings | None = None, outbound: Outbound = NETWORK) -> ServiceApp:
    settings = settings or ChatSettings()
    cache = Downstream("cache", [str(u) for u in settings.cache_url], settings, outbound.transport)
    return create_service_app(CHAT, settings, outbound, calls=cache)
