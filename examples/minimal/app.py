"""The minimal lesson: a FastAPI service sending traces, metrics and logs over OTLP.

Run: ``uvicorn examples.minimal.app:app --port 8090``; README.md says what to look for.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import httpx
from fastapi import FastAPI, Request
from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

# Proxies, free at import: they record once the lifespan has set the providers.
tracer = trace.get_tracer("examples.minimal")
greetings = metrics.get_meter("examples.minimal").create_counter("example.greetings")
log = logging.getLogger(__name__)
# A closed set: a metric attribute must never take whatever value a client sends.
Language = Literal["en", "fr", "de"]
SALUTATIONS: dict[Language, str] = {"en": "Hello", "fr": "Bonjour", "de": "Hallo"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Built here, not at import: each uvicorn worker gets its own export threads.
    # OTEL_SERVICE_NAME beats the code's name (with Resource.create alone, it would not).
    from_env = OTELResourceDetector().detect().attributes
    resource = Resource.create({"service.name": "minimal", **from_env})
    # OTLP/HTTP exporters; they read OTEL_EXPORTER_OTLP_ENDPOINT and its siblings.
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # The SDK's 60 s is too slow to watch a demo; OTEL_METRIC_EXPORT_INTERVAL still wins.
    interval = None if "OTEL_METRIC_EXPORT_INTERVAL" in os.environ else 5_000
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=interval)
    # Its default exemplar filter keeps the trace id of a measurement made inside a span.
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    trace.set_tracer_provider(tracer_provider)  # global: FastAPI and the proxies use them
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)
    logging.basicConfig(level=logging.INFO)  # records to stderr, and with their ids to OTLP:
    otlp_logs = LoggingHandler(logger_provider=logger_provider)
    logging.getLogger().addHandler(otlp_logs)
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")  # httpx: stable names
    downstream = os.environ.get("MINIMAL_DOWNSTREAM_URL", "http://127.0.0.1:8090")
    async with httpx.AsyncClient(base_url=downstream) as client:  # one client, reused
        # Client spans, and the traceparent header that makes the callee's span a child.
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider, meter_provider)
        app.state.client = client
        yield
    logging.getLogger().removeHandler(otlp_logs)
    for provider in (tracer_provider, meter_provider, logger_provider):
        provider.shutdown()  # exports what is still buffered


# FastAPI's own telemetry (>= 0.142) makes the server spans and http.server.* metrics;
# its operation spans (dependencies, endpoint, serialization) would bury the business one.
app = FastAPI(lifespan=lifespan, telemetry={"operation_spans": False})


@app.get("/greet")
async def greet(request: Request, language: Language = "en") -> dict[str, str]:
    with tracer.start_as_current_span("compose greeting") as span:  # the business span
        response = await request.app.state.client.get("/salutation", params={"language": language})
        salutation: str = response.raise_for_status().json()["salutation"]
        span.set_attributes({"greeting.language": language, "greeting.salutation": salutation})
        greetings.add(1, {"greeting.language": language})  # exemplar: this trace's id
        log.info("greeted in %s", language)  # the record carries this span's ids
    trace_id = trace.format_trace_id(span.get_span_context().trace_id)  # to look it up
    return {"greeting": f"{salutation}, world!", "trace_id": trace_id}


@app.get("/salutation")  # the "downstream": MINIMAL_DOWNSTREAM_URL, this app by default
async def salutation(language: Language) -> dict[str, str]:
    return {"salutation": SALUTATIONS[language]}
