"""The apps of services/registry.py chained in one process, each with in-memory
exporters.

Requests travel gateway -> chat -> cache through ``httpx.ASGITransport`` (no
sockets), Redis is a real redis-server, and every span, metric and log a
request produces can be read as soon as its response is back.
"""

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis import Redis
from starlette.types import ASGIApp, Receive, Scope, Send

from services import registry
from services.cache.settings import CacheSettings
from services.chat.settings import ChatSettings
from services.common.app import Outbound
from services.common.settings import ServiceSettings
from services.gateway.rate_limit import KEY_PREFIX as RATE_LIMIT_PREFIX
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from services.telemetry import TelemetryExporters

SERVICES = registry.names()


class _HasAttributes(Protocol):
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...


def attrs(item: _HasAttributes) -> dict[str, Any]:
    """The attributes of a span or data point (the SDK types them as optional)."""
    return dict(item.attributes or {})


@dataclass
class InMemoryTelemetry:
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    metrics: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    logs: InMemoryLogRecordExporter = field(default_factory=InMemoryLogRecordExporter)

    def exporters(self) -> TelemetryExporters:
        return TelemetryExporters(spans=self.spans, metrics=self.metrics, logs=self.logs)

    def outbound(self, downstream: FastAPI | None = None) -> Outbound:
        """In-memory exporters; requests to ``downstream`` stay in this process."""
        transport = httpx.ASGITransport(app=_own_context(downstream)) if downstream else None
        return Outbound(exporters=self.exporters(), transport=transport)


def _own_context(app: FastAPI) -> ASGIApp:
    """``app`` as if in a process of its own: it starts from an empty OpenTelemetry
    context and knows of its caller only what the request's headers say. (In one
    process, the caller's client span would otherwise be the current span, and
    opentelemetry-instrumentation-fastapi would make an INTERNAL span under it.)"""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        token = context.attach(Context())
        try:
            await app(scope, receive, send)
        finally:
            context.detach(token)

    return call


@dataclass
class Chain:
    gateway: httpx.AsyncClient
    telemetry: dict[str, InMemoryTelemetry]
    redis: Redis
    apps: dict[str, FastAPI] = field(default_factory=dict)

    def spans(self, service: str) -> list[ReadableSpan]:
        return list(self.telemetry[service].spans.get_finished_spans())

    def all_spans(self) -> list[tuple[str, ReadableSpan]]:
        return [(service, span) for service in SERVICES for span in self.spans(service)]

    def logs(self, service: str | None = None) -> list[ReadableLogRecord]:
        """What ``service`` exported (every service's, without one)."""
        services = [service] if service else SERVICES
        return [log for s in services for log in self.telemetry[s].logs.get_finished_logs()]

    def metric_points(self, service: str) -> dict[str, list[Any]]:
        """Metric name -> its data points, as the service's reader sees them now."""
        data = self.telemetry[service].metrics.get_metrics_data()
        points: dict[str, list[Any]] = {}
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def stored_keys(self) -> list[str]:
        """What the services stored in Redis, less the gateway's rate-limit counters."""
        keys = [str(key) for key in self.redis.scan_iter()]
        return sorted(key for key in keys if not key.startswith(RATE_LIMIT_PREFIX))

    async def chat(self, message: str, **extra: object) -> httpx.Response:
        return await self.gateway.post(
            "/chat", json={"message": message, **extra}, headers={"X-API-Key": DEMO_API_KEY}
        )


@pytest.fixture
def chat_settings() -> ChatSettings:
    return ChatSettings(thinking_base_ms=20, thinking_per_char_ms=0.5)


@pytest.fixture
def cache_settings(redis_url: str) -> CacheSettings:
    return CacheSettings(redis_url=redis_url)


@pytest.fixture
def gateway_settings(redis_url: str) -> GatewaySettings:
    return GatewaySettings(redis_url=redis_url)


@pytest.fixture
def otel_env() -> dict[str, str]:
    """Standard OTEL_* variables for the chain's apps; a test overrides this with
    ``@pytest.mark.parametrize("otel_env", [{...}])``."""
    return {}


@pytest.fixture
def server_instrumentation() -> str:
    """Which server instrumentation the chain's apps use (test_traces runs both)."""
    return "fastapi"


@pytest.fixture
async def chain(
    redis_url: str,
    cache_settings: CacheSettings,
    chat_settings: ChatSettings,
    gateway_settings: GatewaySettings,
    otel_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    server_instrumentation: str,
) -> AsyncIterator[Chain]:
    """Every service's app, callees first, each one's requests going to the next
    in-process; a service without settings here reads its defaults (and the
    environment, where the test's Redis is)."""
    for name, value in otel_env.items():
        monkeypatch.setenv(name, value)
    redis = Redis.from_url(redis_url, decode_responses=True)
    redis.flushdb()
    # The test's Redis, for every service that calls a Redis (HTTP calls stay in-process):
    # one server, as its admin, for the data and the limits alike.
    for service in registry.SERVICES:
        if service.redis is not None:
            monkeypatch.setenv(service.setting(service.redis), redis_url)
    settings: dict[str, ServiceSettings] = {
        "cache": cache_settings,
        "chat": chat_settings,
        "gateway": gateway_settings,
    }
    telemetry = {service: InMemoryTelemetry() for service in SERVICES}
    # The server instrumentation: in the settings given here, and through the
    # environment for a service that reads its own.
    server = {"server_instrumentation": server_instrumentation}
    for service in registry.SERVICES:
        monkeypatch.setenv(f"{service.name.upper()}_SERVER_INSTRUMENTATION", server_instrumentation)
    apps: list[FastAPI] = []
    for service in registry.start_order():
        create_app = import_module(service.module).create_app
        downstream = apps[-1] if apps else None
        outbound = telemetry[service.name].outbound(downstream=downstream)
        apps.append(create_app(_with(settings.get(service.name), server), outbound))
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(_lifespan(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=apps[-1]), base_url="http://gateway"
            )
        )
        services = [service.name for service in registry.start_order()]
        yield Chain(
            gateway=client,
            telemetry=telemetry,
            redis=redis,
            apps=dict(zip(services, apps, strict=True)),
        )
    redis.close()


def _with(settings: ServiceSettings | None, update: dict[str, str]) -> ServiceSettings | None:
    """``settings`` with ``update`` applied (None, the app's defaults: via the environment)."""
    return settings.model_copy(update=update) if settings is not None else None


def _lifespan(app: FastAPI) -> Any:
    return app.router.lifespan_context(app)
