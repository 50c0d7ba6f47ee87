"""OpenTelemetry for every service, configured in one place.

The shared app factory (``services/common/app.py``) does this for each service::

    telemetry = configure_telemetry("chat", log_level="INFO")  # providers, log handlers
    app = FastAPI(telemetry=telemetry.fastapi_config(excluded_paths=HEALTH_PATHS))
                                               # server spans + http.server.* metrics
    telemetry.instrument_http_client(client)   # client spans + http.client.* metrics
    telemetry.instrument_redis(redis_client)   # one span per Redis command
    telemetry.tracer, telemetry.meter          # the service's own spans and metrics
    telemetry.shutdown()                       # in the lifespan: flush traces, metrics, logs

Exporters speak OTLP and read only the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_TRACES_SAMPLER``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_SDK_DISABLED``, ...). Tests pass in-memory exporters through
:class:`TelemetryExporters` instead.
"""

from services.telemetry._baggage import baggage_entries
from services.telemetry._otlp import otlp_http_traces_url
from services.telemetry._pseudonyms import session_pseudonym
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
    "otlp_http_traces_url",
    "session_pseudonym",
]
