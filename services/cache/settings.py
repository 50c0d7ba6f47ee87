from pydantic import Field, PositiveFloat, PositiveInt, RedisDsn
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class CacheSettings(ServiceSettings):
    """``CACHE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CACHE_")

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    # A Redis on the same network answers in well under a millisecond; past
    # this, failing fast (503) beats piling requests up behind it.
    redis_timeout_seconds: PositiveFloat = 1.0
    default_ttl_seconds: PositiveInt = 3_600
    # The most items a list keeps (an append may ask for fewer): past it, the
    # oldest go. Bounds what one list can take of Redis's memory.
    max_list_length: PositiveInt = Field(default=1_000, le=100_000)
