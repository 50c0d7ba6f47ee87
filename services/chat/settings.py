from pydantic import HttpUrl, NonNegativeFloat, NonNegativeInt, PositiveInt
from pydantic_settings import SettingsConfigDict

from services.common.settings import DownstreamSettings, ServiceUrls


class ChatSettings(DownstreamSettings):
    """``CHAT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CHAT_")

    cache_url: ServiceUrls = (HttpUrl("http://127.0.0.1:8002"),)
    # The simulated "thinking" time of a reply: base + per character, capped.
    # It is what makes a cache hit visibly faster than a miss.
    thinking_base_ms: NonNegativeInt = 50
    thinking_per_char_ms: NonNegativeFloat = 1.0
    thinking_max_ms: NonNegativeInt = 1_500
    # Cached replies expire; Redis evicts nothing, so a full Redis refuses writes
    # until some have (see deploy/redis/redis.conf).
    reply_ttl_seconds: PositiveInt = 3_600
