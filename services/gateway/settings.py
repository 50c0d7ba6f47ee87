from pydantic import Field, HttpUrl, PositiveInt
from pydantic_settings import SettingsConfigDict

from services.common.settings import DownstreamSettings

# Documented in the README; override GATEWAY_API_KEYS anywhere that is not a laptop.
DEMO_API_KEY = "demo-key"


class GatewaySettings(DownstreamSettings):
    """``GATEWAY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    chat_url: HttpUrl = HttpUrl("http://127.0.0.1:8001")
    # API key -> client id, as JSON: GATEWAY_API_KEYS='{"key": "client"}'.
    # The client id (never the key) names the caller in traces and baggage.
    api_keys: dict[str, str] = Field(
        default={DEMO_API_KEY: "demo-client"}, repr=False, min_length=1
    )
    rate_limit_per_minute: PositiveInt = 600
    cors_allow_origins: list[str] = ["http://localhost:3000"]
    # The chat service "thinks" for up to 1.5 s; give it room.
    read_timeout_seconds: float = Field(default=10.0, gt=0)
