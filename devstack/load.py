"""``make load``: a bounded load test of the gateway, with a latency summary.

Messages repeat (a small vocabulary), so about half the replies are cache hits,
as in a real chat. The run stops after ``requests`` requests or ``seconds``.
"""

import asyncio
import random
import statistics
import time
from collections import Counter

import httpx

WORDS = ("hello", "trace", "metrics", "logs", "span", "redis", "cache", "bye")


async def _worker(
    client: httpx.AsyncClient,
    queue: asyncio.Queue[str],
    latencies: list[float],
    statuses: Counter[int],
    deadline: float,
) -> None:
    while time.monotonic() < deadline:
        try:
            message = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        started = time.monotonic()
        try:
            response = await client.post("/chat", json={"message": message})
            statuses[response.status_code] += 1
        except httpx.HTTPError:
            statuses[0] += 1  # no response at all
        latencies.append(time.monotonic() - started)


async def run_load(
    gateway: str, api_key: str, *, requests: int, concurrency: int, seconds: float
) -> None:
    rng = random.Random(42)  # noqa: S311 (a workload, not a secret)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(requests):
        queue.put_nowait(" ".join(rng.choices(WORDS, k=3)))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=gateway, headers={"X-API-Key": api_key}, timeout=30, limits=limits
    ) as client:
        await asyncio.gather(
            *(
                _worker(client, queue, latencies, statuses, started + seconds)
                for _ in range(concurrency)
            )
        )
    elapsed = time.monotonic() - started
    if not latencies:
        print("no requests sent")
        return
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(
        f"{len(latencies)} requests in {elapsed:.1f} s ({len(latencies) / elapsed:.1f} req/s), "
        f"concurrency {concurrency}"
    )
    print("status: " + ", ".join(f"{code or 'failed'}={n}" for code, n in sorted(statuses.items())))
    print(
        "latency: "
        f"p50 {cuts[49] * 1000:.0f} ms, p95 {cuts[94] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms"
    )
