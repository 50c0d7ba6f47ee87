"""The cache service: a small REST API over Redis."""

from redis.exceptions import RedisError

from services.cache.metrics import CacheMetrics
from services.cache.routes import router
from services.cache.settings import CacheSettings
from services.cache.store import RedisConnection, redis_failed
from services.common.app import NETWORK, Outbound, ServiceApp, ServiceSpec, create_service_app

CACHE = ServiceSpec("cache", __doc__, router, CacheMetrics)


def create_app(settings: CacheSettings | None = None, outbound: Outbound = NETWORK) -> ServiceApp:
    settings = settings or CacheSettings()
    app = create_service_app(CACHE, settings, outbound, calls=RedisConnection(settings))
    app.add_exception_handler(RedisError, redis_failed)
    return app
