"""What the load generator's users say, how it stays under the gateway's limits, and
how a run is judged. No Locust here: importing Locust patches the whole process
with gevent, so the unit tests import this module instead."""

import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

# The load-test clients of deploy/gateway/demo-secrets/api-keys.json (a unit test keeps them equal):
# four client ids, four rate-limit budgets.
LOAD_TEST_API_KEYS = ("loadgen-key-1", "loadgen-key-2", "loadgen-key-3", "loadgen-key-4")

# What everyone asks: after its first time, a cache hit.
COMMON_MESSAGES = (
    "hello",
    "what is a trace?",
    "how do spans nest?",
    "what are exemplars?",
    "where do my logs go?",
    "thanks, bye",
)
TOPICS = ("traces", "metrics", "logs", "baggage", "sampling", "the collector", "redis")
REPEATED_SHARE = 0.5  # of a conversation's turns


def message(rng: random.Random) -> str:
    """A message someone asked before (a cache hit), or a new one (a miss)."""
    if rng.random() < REPEATED_SHARE:
        return rng.choice(COMMON_MESSAGES)
    return f"tell me about {rng.choice(TOPICS)} ({uuid.uuid4().hex[:8]})"


def max_requests_per_minute_per_key(users: int, keys: int, think_min_seconds: float) -> float:
    """The most one key can see: users take keys in turn, and think before each request."""
    users_per_key = -(-users // keys)  # ceiling
    return users_per_key * 60 / think_min_seconds


class Budget:
    """At most ``per_minute`` takes per minute, in short bursts (a token bucket).

    Users are greenlets in one thread, and take() does no I/O: no lock needed.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60
        self._capacity = max(1.0, per_minute / 6)  # ten seconds' worth at most
        self._tokens = self._capacity if per_minute > 0 else 0.0
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Stats(Protocol):
    """What the report reads of one of Locust's StatsEntry objects."""

    @property
    def name(self) -> str: ...

    @property
    def method(self) -> str | None: ...

    @property
    def num_requests(self) -> int: ...

    @property
    def num_failures(self) -> int: ...

    @property
    def total_rps(self) -> float: ...

    @property
    def fail_ratio(self) -> float: ...

    def get_response_time_percentile(self, percent: float) -> int: ...


def summary(entries: Iterable[Stats], total: Stats) -> str:
    """One line per endpoint, then the total: requests, failures, req/s, p50/p95/p99 (ms)."""
    lines = [
        f"{'endpoint':<40} {'requests':>8} {'failures':>8} {'req/s':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    ]
    for entry in [*sorted(entries, key=lambda e: (e.name, e.method or "")), total]:
        name = f"{entry.method} {entry.name}" if entry.method else entry.name
        percentiles = (entry.get_response_time_percentile(p) for p in (0.5, 0.95, 0.99))
        lines.append(
            f"{name:<40} {entry.num_requests:>8} {entry.num_failures:>8} "
            f"{entry.total_rps:>7.1f} " + " ".join(f"{p:>7.0f}" for p in percentiles)
        )
    return "\n".join(lines)


def slo_violations(total: Stats, *, max_failure_ratio: float, max_p95_ms: float) -> list[str]:
    """What the run broke, if anything (an empty list: it passed)."""
    if total.num_requests == 0:
        return ["no request was sent"]
    broken = []
    if total.fail_ratio > max_failure_ratio:
        broken.append(f"failure ratio {total.fail_ratio:.3f} > {max_failure_ratio}")
    p95 = total.get_response_time_percentile(0.95)
    if p95 > max_p95_ms:
        broken.append(f"p95 {p95:.0f} ms > {max_p95_ms:.0f} ms")
    return broken
