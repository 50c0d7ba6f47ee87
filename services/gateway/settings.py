import json
import re
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    FilePath,
    HttpUrl,
    PositiveFloat,
    PositiveInt,
    RedisDsn,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from services.common.models import CLIENT_ID_PATTERN
from services.common.settings import DownstreamSettings, RedisCredentials, ServiceUrls

# Documented in docs/learn/architecture.md; override GATEWAY_API_KEYS anywhere that is not a laptop.
DEMO_API_KEY = "demo-key"

CLIENT_ID = re.compile(CLIENT_ID_PATTERN)

# Grafana Explore (the Docker stack's, on the published port) with one trace of the
# provisioned Tempo data source (uid "tempo"). The browser percent-encodes the JSON.
GRAFANA_EXPLORE_TRACE = (
    'http://localhost:3000/explore?schemaVersion=1&panes={"trace":{"datasource":"tempo",'
    '"queries":[{"refId":"A","queryType":"traceql","query":"{trace_id}"}],'
    '"range":{"from":"now-1h","to":"now"}}}'
)


class GatewaySettings(RedisCredentials, DownstreamSettings):
    """``GATEWAY_*`` environment variables."""

    # Validation errors never echo the input: it may hold API keys.
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", hide_input_in_errors=True)

    chat_url: ServiceUrls = (HttpUrl("http://127.0.0.1:8001"),)
    # API key -> client id, as JSON: GATEWAY_API_KEYS='{"key": "client"}', or a
    # file holding that JSON (GATEWAY_API_KEYS_FILE, e.g. a Docker secret), which
    # wins. The client id (never the key) names the caller in telemetry.
    api_keys: dict[str, str] = Field(
        default={DEMO_API_KEY: "demo-client"}, repr=False, min_length=1
    )
    api_keys_file: FilePath | None = None

    # Continue a client's traceparent (a browser or load generator starting the
    # trace), or start a new trace and link to it. Baggage is never taken.
    trust_incoming_trace_context: bool = True
    # Request bodies over this are refused with 413 before they are parsed.
    max_body_bytes: PositiveInt = 16 * 1024

    # Rate limits live in Redis, shared by every gateway worker and replica: their own
    # Redis (redis-limits), as the ACL user `gateway` (GATEWAY_REDIS_PASSWORD_FILE).
    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    # Short: when the limit store is slow or down, requests go on unlimited
    # (fail open) rather than wait for it.
    redis_timeout_seconds: PositiveFloat = 0.25
    rate_limit_per_minute: PositiveInt = 600
    # Failed authentications per client address (an IPv4 address, an IPv6 /64),
    # before its wrong keys get 429s; meanwhile only clients known at that address
    # (authenticated there, within the budget, in the last known_client_seconds)
    # are served. See rate_limit.py.
    auth_failures_per_minute: PositiveInt = 20
    known_client_seconds: PositiveInt = 3600

    # The Host header a request may carry (Starlette's TrustedHostMiddleware, as
    # problem+json): a DNS-rebinding page sends its own host name, so it cannot
    # reach a gateway published on loopback. Health probes are exempt (Kubernetes
    # sends the pod's IP). Add the public host name behind a reverse proxy.
    allowed_hosts: list[str] = Field(
        default=["localhost", "127.0.0.1", "[::1]", "gateway"], min_length=1
    )

    cors_allow_origins: list[str] = ["http://localhost:3000"]

    # The chat page (services/gateway/page.py): each reply's trace id becomes a link
    # made from this, {trace_id} replaced. The default opens Tempo in the Docker
    # stack's Grafana Explore; the native stack (stack/native.py) sets Jaeger's API.
    trace_link_template: str = GRAFANA_EXPLORE_TRACE
    # The page's spans, relayed to the Collector (services/gateway/otlp.py): where to
    # (None: the OTLP/HTTP traces URL the services' own exporters use, see
    # services.telemetry.otlp_http_traces_url), how large one export may be, and
    # how many exports per minute a client id may send (its own budget, apart
    # from rate_limit_per_minute: telemetry never uses up a client's chats).
    otlp_traces_url: HttpUrl | None = None
    otlp_max_body_bytes: PositiveInt = 256 * 1024
    otlp_exports_per_minute: PositiveInt = 120
    # The most a request may take, end to end; every hop below works within what
    # is left of it (services/common/deadline.py). The chat service "thinks" for
    # up to 1.5 s: room for that, a retry and the way back.
    request_budget_seconds: PositiveFloat = 5.0

    @field_validator("api_keys")
    @classmethod
    def _valid_client_ids(cls, api_keys: dict[str, str]) -> dict[str, str]:
        # Checked here rather than by the type, whose errors would name the key.
        bad = sorted({client for client in api_keys.values() if not CLIENT_ID.match(client)})
        if bad:
            raise ValueError(f"client ids must match {CLIENT_ID.pattern}: {bad}")
        return api_keys

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        # Starlette's own rule, checked here so a bad pattern fails at start
        # with the setting's name (its assert would fail on the first request).
        for host in hosts:
            wildcard = host.startswith("*.") and "*" not in host[1:]
            if "*" in host and host != "*" and not wildcard:
                raise ValueError(f"{host!r}: a wildcard only as '*.example.com'")
        return hosts

    @field_validator("trace_link_template")
    @classmethod
    def _has_trace_id(cls, template: str) -> str:
        if "{trace_id}" not in template:
            raise ValueError("must contain {trace_id}")
        return template

    @model_validator(mode="before")
    @classmethod
    def _keys_from_file(cls, data: Any) -> Any:
        """GATEWAY_API_KEYS_FILE's JSON replaces GATEWAY_API_KEYS, then is validated
        like it (the keys are never echoed in an error)."""
        if isinstance(data, dict) and data.get("api_keys_file"):
            data = {**data, "api_keys": json.loads(Path(data["api_keys_file"]).read_text())}
        return data
