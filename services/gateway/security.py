"""Who is calling (API key -> client id) and whether they may, right now."""

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common.problems import ProblemError

API_KEY_HEADER = "X-API-Key"
_ASK = {"WWW-Authenticate": "ApiKey"}  # how a 401 says which credentials it wants


def client_for_key(api_key: str | None, api_keys: dict[str, str]) -> str:
    """The client id an API key belongs to; 401 when missing or unknown.

    Compares in constant time against every key, so timing does not reveal
    how much of a guessed key was right.
    """
    if not api_key:
        raise ProblemError(401, f"Send your API key in the {API_KEY_HEADER} header.", headers=_ASK)
    client_id = None
    for known_key, known_client in api_keys.items():
        if hmac.compare_digest(api_key.encode(), known_key.encode()):
            client_id = known_client
    if client_id is None:
        raise ProblemError(401, "Unknown API key.", headers=_ASK)
    return client_id


@dataclass
class RateLimiter:
    """A token bucket per client: ``per_minute`` requests, refilled smoothly.

    Kept in process memory, so the limit applies per gateway worker; a shared
    limit across replicas would live in Redis.
    """

    per_minute: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self, client_id: str) -> None:
        """Take one token for ``client_id``, or raise 429 with Retry-After."""
        now = self.clock()
        tokens, updated = self._buckets.get(client_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - updated) * self.per_minute / 60)
        if tokens < 1:
            self._buckets[client_id] = (tokens, now)
            retry_after = math.ceil((1 - tokens) * 60 / self.per_minute)
            raise ProblemError(
                429,
                f"More than {self.per_minute} requests per minute.",
                headers={"Retry-After": str(retry_after)},
            )
        self._buckets[client_id] = (tokens - 1, now)
