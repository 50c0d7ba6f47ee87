"""Settings shared by every service; each service subclasses with its env prefix."""

from typing import Literal

from pydantic import Field, PositiveFloat
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.faults import FaultPlan


class ServiceSettings(BaseSettings):
    """Read from environment variables, e.g. ``CHAT_LOG_LEVEL=DEBUG``.

    OpenTelemetry exporters are not configured here: they read the standard
    ``OTEL_*`` variables themselves.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The longest a caller may ask this service to work on one request (its
    # X-Request-Budget-Ms header), and the budget of a request that names none.
    max_request_budget_seconds: PositiveFloat = 30.0
    # Faults on purpose, for demos (services/common/faults.py): a plan at start,
    # e.g. CACHE_FAULTS='{"redis": {"latency_ms": 700}}', changed at run time via
    # /admin/faults with this key (no key: no admin endpoints).
    faults: FaultPlan = {}
    admin_key: str | None = Field(default=None, repr=False)
    # Server spans and http.server.* metrics: FastAPI's own OpenTelemetry support, or
    # opentelemetry-instrumentation-fastapi (kept to compare: see the README's Benchmark).
    server_instrumentation: Literal["fastapi", "contrib"] = "fastapi"


class DownstreamSettings(ServiceSettings):
    """A service that calls another service over HTTP."""

    # Connecting on a local network is quick or it is not happening at all;
    # reading waits for the callee's own work (the chat service "thinks").
    connect_timeout_seconds: PositiveFloat = 1.0
    read_timeout_seconds: PositiveFloat = Field(default=5.0)
    # Connections kept open to the downstream service, per worker.
    max_connections: int = Field(default=100, ge=1)
