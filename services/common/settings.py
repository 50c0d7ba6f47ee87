"""Settings shared by every service; each service subclasses with its env prefix."""

from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    FilePath,
    HttpUrl,
    IPvAnyAddress,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    # Where the admin endpoints listen (services/common/admin.py): never the
    # service's own port. Loopback, so only the host, container or pod itself
    # reaches them; another address makes them reachable from wherever it is.
    # No port: the service's admin_port in services/registry.py (0: any free port,
    # one per worker: for tests).
    admin_host: IPvAnyAddress = IPv4Address("127.0.0.1")
    admin_port: int | None = Field(default=None, ge=0, le=65535)
    # Wrong admin keys a minute (per process), then 429 until the minute is over.
    admin_failures_per_minute: PositiveInt = 10
    # Server spans and http.server.* metrics: FastAPI's own OpenTelemetry support, or
    # opentelemetry-instrumentation-fastapi (kept to compare: docs/operate/benchmark.md).
    server_instrumentation: Literal["fastapi", "contrib"] = "fastapi"


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, HttpUrl):
        return (value,)
    return value


# Where a service is: one base URL, or several, comma-separated
# (CHAT_CACHE_URL=http://127.0.0.1:8002,http://127.0.0.1:8012): calls go to each of
# their addresses in turn (services/common/balancing.py). NoDecode: the value is
# that list, not JSON.
ServiceUrls = Annotated[
    tuple[HttpUrl, ...], NoDecode, BeforeValidator(_comma_separated), Field(min_length=1)
]


class DownstreamSettings(ServiceSettings):
    """A service that calls another service over HTTP."""

    # Connecting on a local network is quick or it is not happening at all;
    # reading waits for the callee's own work (the chat service "thinks").
    connect_timeout_seconds: PositiveFloat = 1.0
    read_timeout_seconds: PositiveFloat = Field(default=5.0)
    # Connections kept open to the downstream service, per worker.
    max_connections: int = Field(default=100, ge=1)
    # How long the addresses a downstream's URLs resolve to are used before they
    # are resolved again: a new replica gets calls within this.
    resolve_ttl_seconds: PositiveFloat = 5.0


class RedisCredentials(BaseSettings):
    """A service that connects to Redis as its own ACL user (deploy/redis/).

    The user is in the service's ``redis_url`` (``redis://cache@redis:6379/0``); its
    password comes from a file, ``<PREFIX>_REDIS_PASSWORD_FILE`` (a Docker or Kubernetes
    secret), so it stays out of the environment, ``docker inspect`` and the URL. It is
    never logged: hidden from the settings' repr and from validation errors.
    """

    redis_password_file: FilePath | None = None
    redis_password: SecretStr | None = Field(default=None, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        """The file's one line (without its newline) replaces any password given."""
        if isinstance(data, dict) and data.get("redis_password_file"):
            text = Path(data["redis_password_file"]).read_text(encoding="utf-8")
            data = {**data, "redis_password": text.rstrip("\r\n")}
        return data

    def redis_password_value(self) -> str | None:
        """The password, for the Redis client (None: connect without one)."""
        return self.redis_password.get_secret_value() if self.redis_password else None
