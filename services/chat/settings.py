from pydantic import Field, HttpUrl, NonNegativeFloat, NonNegativeInt, PositiveInt
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
    # Cached replies expire: they can be made again. Redis evicts nothing, so a
    # full Redis refuses writes until some have (see deploy/redis/redis.conf).
    reply_ttl_seconds: PositiveInt = 3_600
    # Sessions (services/chat/routes.py): a session expires this long after its
    # last turn; a client keeps at most this many (a new one evicts the least
    # recently used); a history keeps its newest turns. Together they bound what
    # one client can hold in Redis: sessions x turns x a turn (at most ~8 KB).
    session_idle_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)
    max_sessions_per_client: int = Field(default=50, ge=1, le=100_000)
    # At most the cache's CACHE_MAX_LIST_LENGTH (the cache keeps no more).
    max_turns_per_session: int = Field(default=100, ge=1, le=100_000)
