from pydantic import Field, PositiveFloat, PositiveInt, RedisDsn
from pydantic_settings import SettingsConfigDict

from services.common.settings import RedisCredentials, ServiceSettings


class CacheSettings(RedisCredentials, ServiceSettings):
    """``CACHE_*`` environment variables."""

    # Validation errors never echo the input: a Redis URL may carry a password.
    model_config = SettingsConfigDict(env_prefix="CACHE_", hide_input_in_errors=True)

    # The data Redis, as the ACL user `cache` (password: CACHE_REDIS_PASSWORD_FILE).
    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    # A Redis on the same network answers in well under a millisecond; past
    # this, failing fast (503) beats piling requests up behind it.
    redis_timeout_seconds: PositiveFloat = 1.0
    default_ttl_seconds: PositiveInt = 3_600
    # The most items a list keeps (an append may ask for fewer): past it, the
    # oldest go. Bounds what one list can take of Redis's memory.
    max_list_length: PositiveInt = Field(default=1_000, le=100_000)
