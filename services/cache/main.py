"""The cache service: a small REST API over Redis."""

from fastapi import FastAPI, Request
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.responses import Response

from services.cache.metrics import CacheMetrics
from services.cache.routes import router
from services.cache.settings import CacheSettings
from services.cache.store import CacheStore, RedisConnection
from services.common.app import PRODUCTION, ServiceSpec, Wiring, create_service_app
from services.common.problems import DownstreamError, problem_for

CACHE = ServiceSpec("cache", __doc__, router, CacheMetrics)


def create_app(settings: CacheSettings | None = None, wiring: Wiring = PRODUCTION) -> FastAPI:
    settings = settings or CacheSettings()
    app = create_service_app(CACHE, settings, RedisConnection(settings), wiring)
    app.add_exception_handler(RedisError, _redis_failed)
    return app


async def _redis_failed(request: Request, exc: Exception) -> Response:
    """Redis down, slow or full: a 503/504 problem; the Redis span holds the cause."""
    if isinstance(exc, RedisTimeoutError):
        return problem_for(request, DownstreamError(504, "Redis did not answer in time."))
    if isinstance(exc, ResponseError):
        # By class, not by message: inside a transaction (a history append) redis-py
        # starts the message with the failing command, not with OOM.
        if isinstance(exc, OutOfMemoryError):
            # maxmemory reached; Redis evicts nothing (see deploy/redis/redis.conf).
            failure = DownstreamError(503, "Redis is full: the write was refused.")
        else:  # e.g. WRONGTYPE: Redis is there, the command or the data is wrong
            failure = DownstreamError(502, "Redis rejected the command.")
        return problem_for(request, failure)
    store: CacheStore = request.app.state.store
    await store.forget_idle_connections()  # they lead to the Redis that went away
    return problem_for(request, DownstreamError(503, "Redis is unavailable."))
