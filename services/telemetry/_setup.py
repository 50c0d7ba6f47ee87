"""Build the three providers (traces, metrics, logs) for one service process.

Called from each service's app factory, so every uvicorn worker process builds
its own providers and exporters (nothing here runs at import time, and no
exporter thread or connection is inherited across a fork).

The standard variables decide, as the OpenTelemetry specification documents
them: ``OTEL_SDK_DISABLED`` (nothing at all), ``OTEL_TRACES_SAMPLER`` and
``OTEL_TRACES_SAMPLER_ARG`` (read by the SDK's TracerProvider),
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (over the code's
defaults, see :func:`_resource`), ``OTEL_EXPORTER_OTLP_*`` (see ``_otlp.py``).
"""

import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import version
from typing import Any

import httpx
import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import (
    HTTPXClientInstrumentor,
    RequestInfo,
    ResponseInfo,
)
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from services.telemetry._baggage import BaggageSpanProcessor
from services.telemetry._logs import (
    attach_log_handlers,
    detach_log_handlers,
    service_log_context,
)
from services.telemetry._otlp import log_exporter, metric_exporter, span_exporter
from services.telemetry._pseudonyms import SessionIdSpanProcessor
from services.telemetry._sampling import EdgeSampler

SERVICE_NAMESPACE = "otel-chat-demo"

# Baggage entries that become span attributes in every service (see _baggage.py).
BAGGAGE_SPAN_ATTRIBUTES = ("client.id",)

# The SDK's default is 60 s: far too slow to watch a demo's dashboards move.
# OTEL_METRIC_EXPORT_INTERVAL, when set, wins.
DEMO_METRIC_EXPORT_INTERVAL_MS = 5_000

# The contrib HTTP and Redis instrumentations read this from the environment
# only. "http" gives the stable http.server/client.request.duration (seconds)
# instead of the old millisecond histograms; "database" gives db.system.name,
# server.address and db.operation.name on Redis spans.
SEMCONV_OPT_IN = "http,database"

# What httpx's instrumentation calls with each client span and its response.
ResponseHook = Callable[[trace.Span, RequestInfo, ResponseInfo], Awaitable[None]]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TelemetryExporters:
    """Exporters to use instead of OTLP: tests pass in-memory ones.

    They are wired synchronously (simple processors) so a test can read what
    a request produced as soon as the response is back.
    """

    spans: SpanExporter
    metrics: MetricReader
    logs: LogRecordExporter


@dataclass(kw_only=True)
class Telemetry:
    """The providers of one service, and the few calls that use them.

    With ``enabled`` false (``OTEL_SDK_DISABLED=true``) the providers hand out
    no-op tracers, meters and loggers, and nothing is instrumented.
    """

    service_name: str
    enabled: bool
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    _log_handlers: list[logging.Handler] = field(default_factory=list)

    @cached_property
    def tracer(self) -> trace.Tracer:
        """The tracer for the service's own (business) spans."""
        return self.tracer_provider.get_tracer(f"services.{self.service_name}")

    @cached_property
    def meter(self) -> metrics.Meter:
        return self.meter_provider.get_meter(f"services.{self.service_name}")

    def fastapi_config(
        self, *, excluded_paths: frozenset[str], excluded_prefixes: tuple[str, ...] = ()
    ) -> TelemetryConfig:
        """Options for ``FastAPI(telemetry=...)``: FastAPI's native OpenTelemetry.

        Chosen over opentelemetry-instrumentation-fastapi because it emits the
        same stable server spans and ``http.server.request.duration`` with less
        CPU per request, has no internal ASGI send/receive spans, and never
        captures request headers (so no API key can leak through it).
        Operation spans (dependencies, endpoint, serialization) are off: they
        triple the span count of a request without telling a reader of this
        demo anything the business spans do not.
        """
        if not self.enabled:
            return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}

        def exclude(scope: MutableMapping[str, Any]) -> bool:
            path = scope.get("path", "")
            return path in excluded_paths or path.startswith(excluded_prefixes)

        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
            "operation_spans": False,
            "auto_configure": False,
            "exclude": exclude,
        }

    def instrument_app_contrib(
        self, app: FastAPI, *, excluded_paths: frozenset[str], excluded_prefixes: tuple[str, ...]
    ) -> None:
        """Server spans from opentelemetry-instrumentation-fastapi instead (FastAPI's
        native telemetry steps aside when it finds contrib's middleware in the stack).

        The same span and metric shape as the native one: no internal ASGI
        send/receive spans, no header capture, the same paths and prefixes excluded.
        Kept selectable (``*_SERVER_INSTRUMENTATION=contrib``) so ``make bench`` can
        show what each costs.
        """
        if not self.enabled:
            return
        # Regular expressions searched in each request's whole URL.
        exact = [f"//[^/]+{re.escape(path)}$" for path in sorted(excluded_paths)]
        prefixes = [f"//[^/]+{re.escape(prefix)}" for prefix in excluded_prefixes]
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            excluded_urls=",".join(exact + prefixes),
            exclude_spans=["send", "receive"],
        )

    def log_context(self) -> AbstractContextManager[None]:
        """Log records written inside the block are this service's (the app
        factory enters it per request and for the lifespan)."""
        return service_log_context(self.service_name)

    def instrument_http_client(
        self, client: httpx.AsyncClient, *, response_hook: ResponseHook | None = None
    ) -> None:
        """Client spans, ``traceparent``/``baggage`` injection, client duration metrics;
        ``response_hook`` may adjust each client span once its response is in."""
        if self.enabled:
            HTTPXClientInstrumentor.instrument_client(
                client,
                tracer_provider=self.tracer_provider,
                meter_provider=self.meter_provider,
                response_hook=response_hook,
            )

    def instrument_redis(self, client: "redis.Redis") -> None:
        """One client span per Redis command (or pipeline)."""
        if self.enabled:
            RedisInstrumentor.instrument_client(client, tracer_provider=self.tracer_provider)

    def shutdown(self) -> None:
        """Flush and stop every provider; export errors are logged, never raised."""
        detach_log_handlers(self._log_handlers)
        self._log_handlers.clear()
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            try:
                provider.shutdown()
            except Exception:
                _log.exception("telemetry shutdown failed for %s", type(provider).__name__)


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``, read the way the SDK's providers read it."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def configure_telemetry(
    service_name: str,
    *,
    log_level: str = "INFO",
    exporters: TelemetryExporters | None = None,
    edge: bool = False,
) -> Telemetry:
    """Build providers for ``service_name``; OTLP unless ``exporters`` are given.

    ``edge``: the service that outside clients call (the gateway). It samples as
    if a remote parent had no sampled flag (see _sampling.py): a client can
    continue its trace, never switch its tracing off.

    With OTLP exporters the providers also become the process-wide (global)
    ones, so third-party libraries that use the global API report too. With
    injected exporters (tests) nothing global is touched, and several apps can
    live in one process.

    With ``OTEL_SDK_DISABLED=true`` no processor, reader or exporter is built
    (so no export thread starts), nothing global is set, and logs go to stdout
    only.
    """
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", SEMCONV_OPT_IN)
    # The SDK's own metrics (otel.sdk.processor.span.processed,
    # otel.sdk.exporter.span.exported, ... with error.type when data is dropped
    # or an export fails): how a demo proves that no telemetry was lost.
    os.environ.setdefault("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    resource = _resource(service_name)
    enabled = not sdk_disabled()

    # Each SDK provider also reads OTEL_SDK_DISABLED and then hands out no-op
    # tracers, meters and loggers; below, it just gets nothing to export with.
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[_metric_reader(exporters)] if enabled else [],
        # Measurements taken inside a sampled span keep its trace id as an
        # exemplar: the link from a latency bucket in Grafana to a trace.
        exemplar_filter=TraceBasedExemplarFilter(),
    )
    # No sampler argument: the SDK takes it from OTEL_TRACES_SAMPLER and
    # OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on).
    # No meter for the tracer's own otel.sdk.span.started/live counters: three
    # counter updates per span (a cost the benchmark's profiles show) for numbers
    # nothing here reads. The processor and exporter counters that prove nothing is
    # lost stay (they get meter_provider).
    tracer_provider = TracerProvider(resource=resource, meter_provider=NoOpMeterProvider())
    if edge:  # before any tracer exists: each takes the provider's sampler
        tracer_provider.sampler = EdgeSampler(tracer_provider.sampler)
    logger_provider = LoggerProvider(resource=resource)
    if enabled:
        tracer_provider.add_span_processor(SessionIdSpanProcessor())
        tracer_provider.add_span_processor(BaggageSpanProcessor(BAGGAGE_SPAN_ATTRIBUTES))
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(exporters.spans)
            if exporters
            else BatchSpanProcessor(span_exporter(meter_provider), meter_provider=meter_provider)
        )
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(exporters.logs)
            if exporters
            else BatchLogRecordProcessor(
                log_exporter(meter_provider), meter_provider=meter_provider
            )
        )
    if enabled and exporters is None:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        set_logger_provider(logger_provider)

    telemetry = Telemetry(
        service_name=service_name,
        enabled=enabled,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
    )
    telemetry._log_handlers = attach_log_handlers(
        service_name,
        logger_provider if enabled else None,
        log_level,
        service_name=str(resource.attributes["service.name"]),
    )
    return telemetry


def _resource(service_name: str) -> Resource:
    """Identify the process: the code's defaults, which the standard variables override.

    Precedence, as the specification has it: ``OTEL_SERVICE_NAME``, then
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, then the code's name. Any
    other attribute in ``OTEL_RESOURCE_ATTRIBUTES`` replaces the code's default
    too. The default ``service.instance.id`` is new in every process, which
    keeps the cumulative metrics of several uvicorn workers apart; one set in
    ``OTEL_RESOURCE_ATTRIBUTES`` is shared by every worker of that service.
    """
    defaults = {
        "service.name": service_name,
        "service.version": version("otel-chat-demo"),
        "service.namespace": SERVICE_NAMESPACE,
        "service.instance.id": str(uuid.uuid4()),
        "deployment.environment.name": "local",
    }
    from_environment = OTELResourceDetector().detect().attributes
    # Resource.create adds the SDK's own attributes (telemetry.sdk.*).
    return Resource.create({**defaults, **from_environment})


def _metric_reader(exporters: TelemetryExporters | None) -> MetricReader:
    if exporters:
        return exporters.metrics
    interval = (
        None if "OTEL_METRIC_EXPORT_INTERVAL" in os.environ else DEMO_METRIC_EXPORT_INTERVAL_MS
    )
    return PeriodicExportingMetricReader(metric_exporter(), export_interval_millis=interval)
