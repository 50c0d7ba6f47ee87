"""The cache service: a small REST API over Redis.

Run: ``uvicorn services.cache.main:create_app --factory --port 8002``
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.responses import Response

from services.cache.metrics import CacheMetrics
from services.cache.routes import router
from services.cache.settings import CacheSettings
from services.cache.store import CacheStore
from services.common.app import create_service_app
from services.common.problems import (
    DownstreamTimeoutError,
    DownstreamUnavailableError,
    ProblemError,
    problem_for,
)
from services.telemetry import Telemetry, TelemetryExporters


def create_app(
    settings: CacheSettings | None = None, *, exporters: TelemetryExporters | None = None
) -> FastAPI:
    settings = settings or CacheSettings()

    @asynccontextmanager
    async def redis_store(app: FastAPI, telemetry: Telemetry) -> AsyncIterator[None]:
        redis = Redis.from_url(
            str(settings.redis_url),
            decode_responses=True,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        telemetry.instrument_redis(redis)
        app.state.store = CacheStore(redis)
        try:
            yield
        finally:
            await redis.aclose()

    async def redis_ready(app: FastAPI) -> None:
        await app.state.store.ping()

    app = create_service_app(
        name="cache",
        description="Values and lists with TTLs, kept in Redis.",
        settings=settings,
        router=router,
        resources=redis_store,
        readiness=redis_ready,
        metrics=CacheMetrics.create,
        exporters=exporters,
    )
    app.add_exception_handler(RedisError, _redis_failed)
    return app


async def _redis_failed(request: Request, exc: Exception) -> Response:
    """Redis down or slow: a 503/504 problem; the Redis span holds the cause."""
    problem: ProblemError = (
        DownstreamTimeoutError("Redis did not answer in time.")
        if isinstance(exc, RedisTimeoutError)
        else DownstreamUnavailableError("Redis is unavailable.")
    )
    return problem_for(request, problem)
