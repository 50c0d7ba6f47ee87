"""OTLP exporters over the transport the standard variables choose.

``OTEL_EXPORTER_OTLP_PROTOCOL`` picks ``grpc`` or ``http/protobuf`` for every
signal; ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` (``_METRICS_``, ``_LOGS_``)
overrides it for one. Unset, it is ``http/protobuf`` (port 4318), the
specification's default. Everything else (endpoint, headers, timeout,
compression, TLS) the exporters read from their own ``OTEL_EXPORTER_OTLP_*``
variables. ``http/json``, which the specification also names, has no Python
exporter: asking for it, or for anything else, stops the service at start-up
instead of silently sending something the receiver does not expect.
"""

import os
from collections.abc import Mapping
from typing import Literal

from opentelemetry.exporter.otlp.proto.grpc import _log_exporter as grpc_logs
from opentelemetry.exporter.otlp.proto.grpc import metric_exporter as grpc_metrics
from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_traces
from opentelemetry.exporter.otlp.proto.http import _log_exporter as http_logs
from opentelemetry.exporter.otlp.proto.http import metric_exporter as http_metrics
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_traces
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

Signal = Literal["traces", "metrics", "logs"]
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"


def otlp_protocol(signal: Signal, environ: Mapping[str, str] = os.environ) -> str:
    """The protocol for ``signal``: its own variable, else the general one, else the default."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(name, "").strip()
        if not value:
            continue
        if value not in PROTOCOLS:
            supported = " or ".join(PROTOCOLS)
            raise ValueError(f"{name}={value!r}: the services export OTLP over {supported}")
        return value
    return DEFAULT_PROTOCOL


def span_exporter(meter_provider: MeterProvider) -> SpanExporter:
    """``meter_provider`` receives the exporter's own metrics (spans exported, failed)."""
    if otlp_protocol("traces") == "grpc":
        return grpc_traces.OTLPSpanExporter(meter_provider=meter_provider)
    return http_traces.OTLPSpanExporter(meter_provider=meter_provider)


def metric_exporter() -> MetricExporter:
    if otlp_protocol("metrics") == "grpc":
        return grpc_metrics.OTLPMetricExporter()
    return http_metrics.OTLPMetricExporter()


def log_exporter(meter_provider: MeterProvider) -> LogRecordExporter:
    if otlp_protocol("logs") == "grpc":
        return grpc_logs.OTLPLogExporter(meter_provider=meter_provider)
    return http_logs.OTLPLogExporter(meter_provider=meter_provider)


# The OTLP/HTTP exporters' default endpoint (the specification's).
_DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"


def otlp_http_traces_url(environ: Mapping[str, str] = os.environ) -> str:
    """Where this process's OTLP/HTTP span exporter sends (``.../v1/traces``).

    The gateway relays the chat page's spans there. The traces endpoint variable
    is the full URL; the general one gets ``/v1/traces`` appended. A gRPC endpoint
    says nothing about the HTTP port, so with gRPC this is the default endpoint's
    URL (the gateway's ``GATEWAY_OTLP_TRACES_URL`` names another).
    """
    if otlp_protocol("traces", environ) == "grpc":
        return f"{_DEFAULT_HTTP_ENDPOINT}/v1/traces"
    if url := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return url
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _DEFAULT_HTTP_ENDPOINT
    return f"{base.rstrip('/')}/v1/traces"
