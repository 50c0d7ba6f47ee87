"""OpenTelemetry for every service, configured in one place.

    telemetry = configure_telemetry("chat", log_level="INFO")
    telemetry.instrument_app(app)              # server spans + http.server.* metrics
    telemetry.instrument_http_client(client)   # client spans + http.client.* metrics
    telemetry.instrument_redis(redis_client)   # one span per Redis command
    ...
    telemetry.shutdown()                       # flushes traces, metrics and logs

Exporters speak OTLP/HTTP and read only the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_RESOURCE_ATTRIBUTES``, ...). Tests pass
in-memory exporters through :class:`TelemetryExporters` instead.
"""

from services.telemetry._baggage import baggage_entries
from services.telemetry._setup import (
    BAGGAGE_SPAN_ATTRIBUTES,
    SERVICE_NAMESPACE,
    Telemetry,
    TelemetryExporters,
    configure_telemetry,
)

__all__ = [
    "BAGGAGE_SPAN_ATTRIBUTES",
    "SERVICE_NAMESPACE",
    "Telemetry",
    "TelemetryExporters",
    "baggage_entries",
    "configure_telemetry",
]
