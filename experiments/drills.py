"""``make drills``: break the running system on purpose, under steady traffic, and
measure what the users and the telemetry saw.

One native stack (stack.native, on free ports) with a short request budget;
for each drill, steady bounded traffic through the gateway (experiments.traffic)
before, during and after the fault. Each drill records the status codes of each
phase, the worst latency (a request never takes much longer than the gateway's
budget: nothing hangs), how long after the restore began every answer was good
again, and how many acknowledged turns (``POST /chat`` answered 200 with
``history_saved``) are missing from their sessions' histories afterwards (none
may be). Throughout, a client guesses keys from an address of its own (over its
failed-authentication limit: experiments.traffic.Guesser): the limits must hold in
every drill (nearly every guess a 429, and ``gateway.rate_limit.bypassed`` still
0). Around each drill, once the traffic has stopped and the telemetry settled,
the spans are counted at every stage: ended in the SDKs, dropped, failed to
export, exported, received by the trace store, stored.

    redis-stop       SIGTERM Redis, start it again (same port, same data dir)
    redis-kill       SIGKILL Redis, start it again
    chat-kill        SIGKILL the chat service, start it again
    cache-slow       the cache answers every request after more than the budget
    collector-stop   SIGTERM the Collector, start it again
    collector-kill   SIGKILL the Collector, start it again
    redis-full       maxmemory lowered, then sessions filled through the gateway
                     (long messages, many clients) until Redis refuses a turn;
                     then held full. Nothing is evicted, the limits hold

Writes, in experiments/results/, ``drills.json`` (everything), ``drills-summary.md``
(the tables that docs/operate/drills.md includes) and ``drills.md`` (those, then each
phase's statuses, latencies and errors), all from the report alone (``--fast``: shorter phases
and small SDK queues, for the tests; it writes only where told).
"""

import asyncio
import json
import math
import re
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from experiments.traffic import Answer, Guesser, Session, Traffic, lost_turns
from services import registry
from services.cache.lists import GROUP_PREFIX, IDS_PREFIX, LIST_PREFIX
from services.common.models import MAX_MESSAGE_CHARS
from services.gateway.settings import DEMO_API_KEY
from stack.backends import Backends
from stack.faults import COLLECTOR, NativeTarget
from stack.native import REPO, NativeStack, Ports, native_stack
from stack.processes import wait_until
from stack.redis_servers import CONFIGS, admin_url
from traces.otlp_json import StoredSpan, flatten

# The gateway's budget for every drill request (GATEWAY_REQUEST_BUDGET_SECONDS),
# short so a drill is quick; the margin covers the way back and a busy machine.
BUDGET_SECONDS = 1.0
LATENCY_MARGIN_SECONDS = 0.3
DEMO_API_KEYS = REPO / "deploy/gateway/demo-secrets/api-keys.json"
SERVICES = registry.names()
# The SDK's defaults (OpenTelemetry Python): what the memory bound is computed from.
SDK_SPAN_QUEUE, SDK_SPAN_BATCH = 2048, 512
# The key guesser: its failed-authentication limit, low so that a limit that holds and
# one that does not are far apart; one guess per period.
AUTH_FAILURES_PER_MINUTE = 5
GUESS_PERIOD = 0.1
LIMIT_WINDOW_SECONDS = 60
# redis-full's clients (beside the demo key), so that the fill reaches a full Redis
# however many sessions a client may hold; and its message, as long as a message may be.
FILLERS = {f"drill-filler-key-{n}": f"drill-filler-{n}" for n in range(8)}
FILLER_MESSAGE = "fill " + "x" * (MAX_MESSAGE_CHARS - 5)
FILLER_TURNS_PER_SESSION = 25
FILLER_WORKERS = 3


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts, the load, and the services' SDK settings."""

    name: str
    before: float  # seconds of traffic before the fault
    during: float  # seconds with the fault in place
    collector_outage: float  # the same, for the Collector drills
    settle: float  # recovered: this long of good answers after the restore
    recovery_deadline: float
    workers: int = 4
    period: float = 0.2  # each worker: one request per period at most (<= 20 req/s)
    redis_headroom_bytes: int = 1 << 20  # redis-full: maxmemory = used + this
    sdk_env: dict[str, str] = field(default_factory=dict)


FULL = Plan(
    "full",
    before=5,
    during=8,
    # Long enough at this load for the SDKs' default queues (2048 spans) to fill:
    # each failing batch (512) is retried for 10 s, meanwhile more spans end.
    collector_outage=30,
    settle=3,
    recovery_deadline=30,
    workers=8,
)
FAST = Plan(
    "fast",
    before=2,
    during=3,
    collector_outage=4,
    settle=1.5,
    recovery_deadline=20,
    redis_headroom_bytes=1 << 19,
    # Small queues and a 2-s export timeout: a 4-s outage overflows them as a
    # long one would overflow the defaults.
    sdk_env={
        "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32",
        "OTEL_BLRP_MAX_QUEUE_SIZE": "64",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "32",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    },
)


def service_env(plan: Plan) -> dict[str, str]:
    return {
        "GATEWAY_REQUEST_BUDGET_SECONDS": str(BUDGET_SECONDS),
        # One client at 20 req/s: over the demo's 600 a minute.
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
        # Every session of a drill stays live until its turns are read back (the
        # traffic starts a new one every 20 turns, all on one API key).
        "CHAT_MAX_SESSIONS_PER_CLIENT": "100000",
        "GATEWAY_AUTH_FAILURES_PER_MINUTE": str(AUTH_FAILURES_PER_MINUTE),
        # redis-full's long messages: the first one "thinks" within the budget too.
        "CHAT_THINKING_MAX_MS": str(int(BUDGET_SECONDS * 1000 / 2)),
        # Telemetry settles quickly once the traffic stops (the counts wait for it).
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        **plan.sdk_env,
    }


@dataclass
class Lab:
    """The stack under drill, and what the drills do to it."""

    stack: NativeStack
    plan: Plan

    @property
    def ports(self) -> Ports:
        return self.stack.ports

    @property
    def backends(self) -> Backends:
        return Backends(self.ports)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.services[service]}"

    def redis(self, name: str = registry.REDIS) -> Redis:
        """A Redis of the stack, as its admin (the services' own users may not CONFIG)."""
        return Redis.from_url(admin_url(self.ports.redises[name]), decode_responses=True)

    def pid(self, name: str) -> int | None:
        return next((r.pid for r in self.stack.running if r.name == name), None)

    async def stop(self, name: str, *, kill: bool) -> None:
        await asyncio.to_thread(self.stack.stop_component, name, kill=kill)

    async def restart(self, name: str) -> None:
        await asyncio.to_thread(self.stack.restart_component, name)


Action = Callable[[Lab, Traffic], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Drill:
    name: str
    fault: str  # what is done, for the report
    break_: Action
    restore: Action
    # What users may see while the fault is in place (anything else is a violation),
    # and what they must see (the fault really took effect).
    allowed: frozenset[str]
    expected: str
    # How the span counts must agree: "exact" (nothing lost at any stage),
    # "collector-crash" (what the killed Collector held is lost: counted, not
    # reported by any SDK), "service-crash" (a killed service takes its queue and
    # its last self-metrics with it: only the trace store is checked).
    spans: str = "exact"
    collector: bool = False  # the during phase is the Collector outage


def _stop(name: str, *, kill: bool) -> Action:
    async def action(lab: Lab, traffic: Traffic) -> dict[str, Any]:
        await lab.stop(name, kill=kill)
        return {}

    return action


def _restart(name: str) -> Action:
    async def action(lab: Lab, traffic: Traffic) -> dict[str, Any]:
        started = time.monotonic()
        await lab.restart(name)
        return {"ready_after_s": round(time.monotonic() - started, 2)}

    return action


def _cache_faults(plan: dict[str, Any]) -> Action:
    """Set the cache service's fault plan (its /admin/faults, as `make fault` does)."""

    async def action(lab: Lab, traffic: Traffic) -> dict[str, Any]:
        await asyncio.to_thread(NativeTarget(lab.stack).set_plan, "cache", plan)
        return {"cache_faults": plan} if plan else {}

    return action


async def _fill_redis(lab: Lab, traffic: Traffic) -> dict[str, Any]:
    """Lower the data Redis' maxmemory; fill it with sessions through the gateway, as
    any client could (long messages, several clients, new sessions), until it refuses a
    turn; check every acknowledged turn is still there; then keep it full."""
    headroom = lab.plan.redis_headroom_bytes
    async with lab.redis() as redis, lab.redis(registry.REDIS_LIMITS) as limits:
        original = (await redis.config_get("maxmemory"))["maxmemory"]
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory", used + headroom)
        evicted_before = await _evicted(redis), await _evicted(limits)
        refused_before = await _oom_errors(redis)
        histories_before = await _count_keys(redis, "list:history:*")
        fill = await _fill_through_the_gateway(lab.url("gateway"), limit_bytes=8 * headroom)
        histories_after = await _count_keys(redis, "list:history:*")
        snapshot = [Session(s.session_id, list(s.acknowledged)) for s in traffic.sessions.values()]
        checked, lost = await lost_turns(lab.url("gateway"), DEMO_API_KEY, snapshot)
        # Full means full: at the limit, Redis admits a write whenever it has freed some
        # memory (it shrinks idle clients' request buffers, here up to a few hundred KiB,
        # a few seconds later, and cached replies expire). Well below what it holds, it
        # refuses every write.
        full_maxmemory = int((await redis.info("memory"))["used_memory"]) // 2
        await redis.config_set("maxmemory", full_maxmemory)
        full_at = traffic.clock()
        evicted = (await _evicted(redis), await _evicted(limits))
        evicted = (evicted[0] - evicted_before[0], evicted[1] - evicted_before[1])
        refused = await _oom_errors(redis) - refused_before
    return {
        "maxmemory_bytes": used + headroom,
        "original_maxmemory": original,
        **fill,
        "writes_refused_oom": refused,
        "keys_evicted": evicted[0],
        "limit_keys_evicted": evicted[1],
        "histories_before_fill": histories_before,
        "histories_after_fill": histories_after,
        "acknowledged_turns_checked_after_fill": checked,
        "acknowledged_turns_lost_after_fill": lost,
        "full_at": full_at,
        "maxmemory_while_full": full_maxmemory,
    }


async def _fill_through_the_gateway(gateway: str, *, limit_bytes: int) -> dict[str, Any]:
    """``POST /chat`` with FILLER_MESSAGE from FILLER_WORKERS workers, each starting a new
    session every FILLER_TURNS_PER_SESSION turns, and on its next client whenever one is
    refused (a cap on sessions or turns, from whatever source), until a turn is answered
    but not saved: Redis refused it. ``limit_bytes`` of messages at most."""
    keys = list(FILLERS)
    saved, sessions, refused_by_gateway = 0, 0, Counter[int]()
    unsaved = asyncio.Event()
    attempts = 2 * limit_bytes // len(FILLER_MESSAGE)  # refusals included: never endless

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        nonlocal saved, sessions, attempts
        key, session, turns = n, None, 0
        while not unsaved.is_set() and saved * len(FILLER_MESSAGE) < limit_bytes and attempts:
            attempts -= 1
            body = {"message": FILLER_MESSAGE} | ({"session_id": session} if session else {})
            headers = {"X-API-Key": keys[key % len(keys)]}
            response = await client.post("/chat", json=body, headers=headers)
            if response.status_code != 200:  # refused: a cap, or out of time while thinking
                refused_by_gateway[response.status_code] += 1
                key, session, turns = (key + 1 if session is None else key), None, 0
                continue
            answer = response.json()
            if not answer["history_saved"]:
                unsaved.set()
                return
            sessions += session is None
            saved, session, turns = saved + 1, answer["session_id"], turns + 1
            if turns >= FILLER_TURNS_PER_SESSION:
                session, turns = None, 0

    async with httpx.AsyncClient(base_url=gateway, timeout=BUDGET_SECONDS + 10) as client:
        await asyncio.gather(*(worker(n, client) for n in range(FILLER_WORKERS)))
    return {
        "filler_turns_saved": saved,
        "filler_sessions": sessions,
        "filler_clients": len(FILLERS),
        "filler_refused_by_gateway": dict(refused_by_gateway),
        "refused_a_turn": unsaved.is_set(),
    }


async def _empty_redis(lab: Lab, traffic: Traffic) -> dict[str, Any]:
    async with lab.redis() as redis:
        # A history is a list and its ids; each filler client has its session group
        # (services/cache/lists.py, services/chat/routes.py).
        patterns = [f"{prefix}history:drill-filler-*" for prefix in (LIST_PREFIX, IDS_PREFIX)]
        patterns.append(f"{GROUP_PREFIX}sessions:drill-filler-*")
        fillers = [key for pattern in patterns async for key in redis.scan_iter(pattern)]
        if fillers:
            await redis.delete(*fillers)
        maxmemory = _redis_config_value("maxmemory")
        await redis.config_set("maxmemory", maxmemory)
    return {"maxmemory_restored": maxmemory, "filler_histories_deleted": len(fillers)}


def _redis_config_value(name: str) -> str:
    """A setting of the data Redis' configuration file, as the file has it."""
    text = CONFIGS[registry.REDIS].read_text()
    found = re.search(rf"^{name}\s+(\S+)", text, re.MULTILINE)
    assert found, f"{name} is not set in {CONFIGS[registry.REDIS]}"
    return found.group(1)


async def _evicted(redis: Redis) -> int:
    return int((await redis.info("stats"))["evicted_keys"])


async def _oom_errors(redis: Redis) -> int:
    """Commands Redis refused for want of memory (INFO errorstats), so far."""
    stats = await redis.info("errorstats")
    return int((stats.get("errorstat_OOM") or {}).get("count", 0))


async def _count_keys(redis: Redis, pattern: str) -> int:
    return len([key async for key in redis.scan_iter(pattern, count=1000)])


SAVED, UNSAVED = "200", "200 not saved"


def _process_drill(
    component: str, *, kill: bool, allowed: set[str], expected: str, **kw: Any
) -> Drill:
    """Stop (SIGTERM) or kill (SIGKILL) one process of the stack, start it again."""
    how = "killed (SIGKILL)" if kill else "stopped cleanly (SIGTERM)"
    return Drill(
        f"{component.removeprefix('otel-')}-{'kill' if kill else 'stop'}",
        f"{component} {how}, then started again with the same command line",
        _stop(component, kill=kill),
        _restart(component),
        allowed=frozenset(allowed),
        expected=expected,
        **kw,
    )


DRILLS = (
    _process_drill("redis", kill=False, allowed={SAVED, UNSAVED}, expected=UNSAVED),
    _process_drill("redis", kill=True, allowed={SAVED, UNSAVED}, expected=UNSAVED),
    # 502: the connection of a request in flight broke; 503: nothing listens.
    _process_drill(
        "chat", kill=True, allowed={SAVED, "502", "503"}, expected="503", spans="service-crash"
    ),
    Drill(
        "cache-slow",
        f"cache answers after {BUDGET_SECONDS + 0.5:.1f} s (fault injected via /admin/faults)",
        _cache_faults({"self": {"latency_ms": int((BUDGET_SECONDS + 0.5) * 1000)}}),
        _cache_faults({}),
        allowed=frozenset({SAVED, UNSAVED, "504"}),
        expected="504",
    ),
    _process_drill(COLLECTOR, kill=False, allowed={SAVED}, expected=SAVED, collector=True),
    _process_drill(
        COLLECTOR,
        kill=True,
        allowed={SAVED},
        expected=SAVED,
        spans="collector-crash",
        collector=True,
    ),
    Drill(
        "redis-full",
        "Redis maxmemory lowered, sessions filled through the gateway until Redis refused "
        "a turn, then maxmemory halved",
        _fill_redis,
        _empty_redis,
        allowed=frozenset({SAVED, UNSAVED}),
        expected=UNSAVED,
    ),
)
BY_NAME = {drill.name: drill for drill in DRILLS}


# --- Telemetry counts ------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Cumulative counters at one moment, per (service, instance, error type)."""

    at: datetime
    series: dict[str, float]
    trace_store_received: float  # spans Jaeger's receiver accepted

    def delta(self, earlier: "Counts") -> dict[str, float]:
        """What each counter grew by since ``earlier`` (a series that vanished,
        e.g. a killed process's, grew by nothing)."""
        grew = {key: value - earlier.series.get(key, 0.0) for key, value in self.series.items()}
        grew["trace_store_received"] = self.trace_store_received - earlier.trace_store_received
        return grew


BYPASSED = "rate_limit_bypassed"
_SDK_COUNTERS = {
    "span_processed": "otel_sdk_processor_span_processed_total",
    "span_exported": "otel_sdk_exporter_span_exported_total",
    "log_processed": "otel_sdk_processor_log_processed_total",
    "log_exported": "otel_sdk_exporter_log_exported_total",
}


def read_counts(backends: Backends) -> Counts:
    series: dict[str, float] = {}
    for short, metric in _SDK_COUNTERS.items():
        query = f"sum by (service_name, service_instance_id, error_type) ({metric})"
        for row in backends.promql(query):
            labels = row["metric"]
            key = "|".join(
                (
                    short,
                    labels.get("service_name", ""),
                    labels.get("service_instance_id", ""),
                    labels.get("error_type", ""),
                )
            )
            series[key] = float(row["value"][1])
    # Requests the gateway served without a rate-limit check (its limit store failed).
    query = "sum by (service_name, service_instance_id) (gateway_rate_limit_bypassed_total)"
    for row in backends.promql(query):
        labels = row["metric"]
        key = (
            f"{BYPASSED}|{labels.get('service_name', '')}|{labels.get('service_instance_id', '')}|"
        )
        series[key] = float(row["value"][1])
    received = backends.counter(
        backends.ports.jaeger_metrics, "otelcol_receiver_accepted_spans_total"
    )
    return Counts(datetime.now(UTC), series, received)


def settled_counts(backends: Backends, *, timeout: float = 60) -> Counts:
    """The counters once they stop moving: no traffic, queues empty, the last
    metric export in Prometheus (two readings 1.5 s apart agree)."""
    previous: Counts | None = None

    def probe() -> Counts | None:
        nonlocal previous
        counts, last = read_counts(backends), previous
        previous = counts
        unchanged = last is not None and (counts.series, counts.trace_store_received) == (
            last.series,
            last.trace_store_received,
        )
        return counts if unchanged else None

    return wait_until(probe, timeout=timeout, what="telemetry counts to settle", interval=1.5)


def stored_spans(backends: Backends, since: datetime) -> int:
    """Spans in the trace store whose trace began after ``since``, whichever
    service they are from (a trace may have lost its gateway spans)."""
    ids: set[str] = set()
    for service in SERVICES:
        ids |= backends.stored_span_ids(service, since=since)
    return len(ids)


def stored_logs(backends: Backends, since: datetime, until: datetime) -> int:
    """Log records in the log store written between ``since`` and ``until``."""
    window = f"_time:[{since.isoformat()}, {until.isoformat()}]"
    rows = backends.logs(f"{window} | stats count() as records")
    return int(rows[0]["records"]) if rows else 0


def span_stages(grew: dict[str, float]) -> dict[str, float]:
    """Spans at each stage, summed over the services, from counter growth."""

    def total(kind: str, *, error: str | None = None, failed: bool = False) -> float:
        found = 0.0
        for key, value in grew.items():
            parts = key.split("|")
            if len(parts) != 4 or parts[0] != kind:
                continue
            error_type = parts[3]
            if (error is not None and error_type == error) or (
                error is None and (bool(error_type) == failed)
            ):
                found += value
        return found

    return {
        "ended": total("span_processed", failed=False) + total("span_processed", failed=True),
        "dropped (queue full)": total("span_processed", error="queue_full"),
        "export failed": total("span_exported", failed=True),
        "exported": total("span_exported", failed=False),
        "received by the trace store": grew["trace_store_received"],
    }


def log_stages(grew: dict[str, float]) -> dict[str, float]:
    def total(kind: str, failed: bool) -> float:
        return sum(
            value
            for key, value in grew.items()
            if key.startswith(f"{kind}|") and bool(key.split("|")[3]) == failed
        )

    return {
        "emitted": total("log_processed", False) + total("log_processed", True),
        "dropped (queue full)": total("log_processed", True),
        "export failed": total("log_exported", True),
        "exported": total("log_exported", False),
    }


# --- Running a drill -------------------------------------------------------------------


def _good_since(answers: Sequence[Answer], since: float) -> float | None:
    """When the final run of good answers sent after ``since`` began (None if the
    last answer was not good, or there is none)."""
    later = sorted((a for a in answers if a.at >= since), key=lambda a: a.at)
    if not later or not later[-1].ok:
        return None
    start = len(later) - 1
    while start > 0 and later[start - 1].ok:
        start -= 1
    return later[start].at


def phase_summary(answers: Sequence[Answer]) -> dict[str, Any]:
    latencies = sorted(a.latency for a in answers)
    details = Counter(f"{a.status} {a.detail}" for a in answers if a.detail)
    return {
        "requests": len(answers),
        "outcomes": dict(sorted(Counter(a.outcome for a in answers).items())),
        "worst_ms": round(latencies[-1] * 1000) if latencies else None,
        "median_ms": round(latencies[len(latencies) // 2] * 1000) if latencies else None,
        "details": dict(details.most_common(3)),
    }


def _rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else None


async def _sample_memory(lab: Lab, traffic: Traffic, samples: list[dict[str, Any]]) -> None:
    while True:
        samples.append({"at": traffic.clock(), **{s: _rss_kib(lab.pid(s)) for s in SERVICES}})
        await asyncio.sleep(0.5)


async def _collector_accepting(lab: Lab) -> bool:
    """The restarted Collector has taken spans from the services."""
    try:
        accepted = await asyncio.to_thread(
            lab.backends.collector_counter, "otelcol_receiver_accepted_spans_total"
        )
    except OSError:
        return False
    return accepted > 0


async def run_drill(lab: Lab, drill: Drill) -> dict[str, Any]:
    plan = lab.plan
    traffic = Traffic(
        lab.url("gateway"),
        DEMO_API_KEY,
        workers=plan.workers,
        period=plan.period,
        timeout=BUDGET_SECONDS + 10,
    )
    stop = asyncio.Event()
    load = asyncio.create_task(traffic.run(stop))
    guesser = Guesser(lab.url("gateway"), period=GUESS_PERIOD, clock=traffic.clock)
    guessing = asyncio.create_task(guesser.run(stop))
    memory: list[dict[str, Any]] = []
    sampler = asyncio.create_task(_sample_memory(lab, traffic, memory))
    notes: dict[str, Any] = {}
    flowing_at: float | None = None
    try:
        await asyncio.sleep(plan.before)
        broken_at = traffic.clock()
        notes |= await drill.break_(lab, traffic)
        await asyncio.sleep(plan.collector_outage if drill.collector else plan.during)
        restore_at, restored_wall = traffic.clock(), datetime.now(UTC)
        notes |= await drill.restore(lab, traffic)
        deadline = restore_at + plan.recovery_deadline
        while traffic.clock() < deadline:
            if flowing_at is None and (not drill.collector or await _collector_accepting(lab)):
                flowing_at = traffic.clock()
            good = _good_since(traffic.answers, restore_at)
            settled = good is not None and traffic.clock() - good >= plan.settle
            if flowing_at is not None and settled:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await load
        await guessing
        sampler.cancel()
        with suppress(asyncio.CancelledError):
            await sampler
    good = _good_since(traffic.answers, restore_at)
    recovered = None if good is None or flowing_at is None else max(good, flowing_at)
    checked, lost = await lost_turns(lab.url("gateway"), DEMO_API_KEY, traffic.sessions.values())

    # Before: answered before the fault began; during: sent before the restore
    # (answered or not); after: sent after the restore began.
    def answered_before(answer: Answer) -> bool:
        return answer.at + answer.latency < broken_at

    phases = {
        "before": [a for a in traffic.answers if answered_before(a)],
        "during": [a for a in traffic.answers if not answered_before(a) and a.at < restore_at],
        "after": [a for a in traffic.answers if a.at >= restore_at],
    }
    if "full_at" in notes:  # redis-full: sent and answered while it refused every write
        phases["full"] = [
            a for a in traffic.answers if notes["full_at"] <= a.at and a.at + a.latency < restore_at
        ]
    result: dict[str, Any] = {
        "name": drill.name,
        "fault": drill.fault,
        "phases": {name: phase_summary(answers) for name, answers in phases.items()},
        "worst_ms": round(max(a.latency for a in traffic.answers) * 1000),
        "fault_s": round(restore_at - broken_at, 1),
        "recovered_after_s": None if recovered is None else round(recovered - restore_at, 2),
        "acknowledged_turns": checked,
        "acknowledged_turns_lost": lost,
        "sessions": len(traffic.sessions),
        "sessions_vanished": len(traffic.vanished),
        "limits": limits_held(guesser.answers, broken_at, restore_at),
        "notes": notes,
    }
    if drill.collector:
        result["telemetry_flowing_after_s"] = (
            None if flowing_at is None else round(flowing_at - restore_at, 2)
        )
        result["rss_kib"] = _memory_by_phase(memory, broken_at, restore_at)
        result["arrived_after_restore"] = await asyncio.to_thread(
            _arrived_since, lab.backends, restored_wall
        )
    return result


def limits_held(answers: Sequence[Answer], since: float, until: float) -> dict[str, Any]:
    """The key guesser's answers while the fault was in place: refused (429), let through
    (401: a failed authentication, counted), and the most a limit that holds lets through
    in that time. Its sliding window counts in fixed windows of a minute from the first
    failure, each admitting at most AUTH_FAILURES_PER_MINUTE; the fault overlaps at most
    one window more than it lasts minutes."""
    during = Counter(a.outcome for a in answers if since <= a.at < until)
    windows = math.ceil((until - since) / LIMIT_WINDOW_SECONDS) + 1
    return {
        "guesses": sum(during.values()),
        "refused": during.pop("429", 0),
        "let_through": during.pop("401", 0),
        "let_through_at_most": AUTH_FAILURES_PER_MINUTE * windows,
        "other": dict(during),  # none: every guess is a 401 or a 429
    }


def _arrived_since(backends: Backends, since: datetime) -> dict[str, float]:
    """Telemetry in each store that was made after ``since``: spans of traces begun,
    log records written, and the newest SDK metric sample's age in seconds (each
    waited for a little: the last exports may still be on their way)."""

    def arrived() -> dict[str, float] | None:
        newest = backends.scalar("max(timestamp(otel_sdk_processor_span_processed_total))")
        found = {
            "spans": float(stored_spans(backends, since)),
            "log_records": float(stored_logs(backends, since, datetime.now(UTC))),
            "metrics_newer_by_s": round(newest - since.timestamp(), 1),
        }
        return found if all(value > 0 for value in found.values()) else None

    try:
        return wait_until(arrived, timeout=30, what="telemetry after the restore", interval=1)
    except TimeoutError:
        return {"spans": 0.0, "log_records": 0.0, "metrics_newer_by_s": 0.0}


def _memory_by_phase(
    samples: list[dict[str, Any]], broken_at: float, restore_at: float
) -> dict[str, dict[str, int | None]]:
    """Each service's RSS just before the fault, and its highest during it."""
    before = [s for s in samples if s["at"] < broken_at]
    during = [s for s in samples if broken_at <= s["at"] < restore_at]
    summary: dict[str, dict[str, int | None]] = {}
    for service in SERVICES:
        last = before[-1][service] if before else None
        peak = max((s[service] for s in during if s[service] is not None), default=None)
        summary[service] = {"before": last, "peak_during": peak}
    return summary


# --- What must hold ---------------------------------------------------------------


def violations(report: dict[str, Any]) -> list[str]:
    """Every invariant a report breaks (none when all is well), per drill."""
    return [problem for result in report["drills"] for problem in drill_violations(report, result)]


def drill_violations(report: dict[str, Any], result: dict[str, Any]) -> list[str]:
    drill = BY_NAME[result["name"]]
    name, phases = drill.name, result["phases"]
    limit_ms = (report["budget_s"] + report["latency_margin_s"]) * 1000
    problems = []
    if result["acknowledged_turns"] == 0:
        problems.append(f"{name}: no turn was acknowledged: nothing was checked")
    if result["acknowledged_turns_lost"] or result["sessions_vanished"]:
        problems.append(
            f"{name}: {result['acknowledged_turns_lost']} acknowledged turns lost, "
            f"{result['sessions_vanished']} sessions answered 404"
        )
    if result["worst_ms"] > limit_ms:
        problems.append(f"{name}: a request took {result['worst_ms']} ms (limit {limit_ms:.0f})")
    if result["recovered_after_s"] is None:
        problems.append(f"{name}: not recovered within {report['plan']['recovery_deadline']} s")
    if set(phases["before"]["outcomes"]) != {SAVED}:
        problems.append(f"{name}: before the fault: {phases['before']['outcomes']}")
    during = set(phases["during"]["outcomes"])
    if not during <= drill.allowed or drill.expected not in during:
        problems.append(
            f"{name}: during the fault {phases['during']['outcomes']} (allowed: "
            f"{sorted(drill.allowed)}, expected among them: {drill.expected})"
        )
    problems += [f"{name}: {p}" for p in _limit_problems(result["limits"])]
    problems += [f"{name}: {p}" for p in _span_problems(drill, result["spans"])]
    return problems


def _limit_problems(limits: dict[str, Any]) -> list[str]:
    """The rate limits held: nearly every guess refused, none served unchecked."""
    problems = []
    if not limits["guesses"] or limits["other"]:
        problems.append(f"key guesses answered {limits['other']} (or none sent)")
    if limits["let_through"] > limits["let_through_at_most"]:
        problems.append(
            f"{limits['let_through']} guessed keys let through (a limit that holds: at most "
            f"{limits['let_through_at_most']})"
        )
    if limits["bypassed"]:
        problems.append(f"{limits['bypassed']:g} requests served without a rate-limit check")
    return problems


def _span_problems(drill: Drill, spans: dict[str, float]) -> list[str]:
    ended, dropped, failed = spans["ended"], spans["dropped (queue full)"], spans["export failed"]
    exported, received = spans["exported"], spans["received by the trace store"]
    stored = spans["stored in the trace store"]
    problems = []
    if received != stored:
        problems.append(f"the trace store received {received:g} spans but stores {stored:g}")
    if drill.spans == "service-crash":
        return problems
    if ended != dropped + failed + exported:
        problems.append(f"spans: {ended:g} ended != {dropped:g} + {failed:g} + {exported:g}")
    if drill.spans == "exact" and exported != received:
        problems.append(f"{exported:g} spans exported, {received:g} received")
    if drill.spans == "collector-crash" and exported < received:
        problems.append(f"{exported:g} spans exported but more ({received:g}) received")
    return problems


# --- Span memory ----------------------------------------------------------------------


class _Keep(SpanProcessor):
    """Holds ended spans, as a full export queue does."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _attribute_value(value: Any) -> Any:
    if isinstance(value, dict) and "values" in value:  # an OTLP JSON arrayValue
        return [next(iter(v.values())) for v in value["values"]]
    return value


def span_bytes(spans: Sequence[StoredSpan]) -> float:
    """The mean memory a span takes while it waits in an export queue, for spans
    rebuilt from stored ones (same names, kinds and attributes), by tracemalloc."""
    provider = TracerProvider(resource=Resource.create(spans[0].resource))
    keep = _Keep()
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("experiments.drills")
    kinds = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for stored in spans:
            attributes = {k: _attribute_value(v) for k, v in stored.attributes.items()}
            with tracer.start_as_current_span(
                stored.name, kind=kinds.get(stored.kind, SpanKind.INTERNAL), attributes=attributes
            ):
                pass
        grew = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(keep.spans) == len(spans)
    return grew / len(spans)


def _recent_spans(backends: Backends, since: datetime, limit: int) -> list[StoredSpan]:
    body = backends.get_json(
        backends.ports.jaeger_query,
        "/api/v3/traces",
        **{
            "query.service_name": "gateway",
            "query.start_time_min": since.isoformat(),
            "query.start_time_max": datetime.now(UTC).isoformat(),
            "query.num_traces": str(limit),
        },
    )
    return flatten(body["result"]["resourceSpans"])


# --- The run ---------------------------------------------------------------------------


async def run_drills(
    lab: Lab, drills: Sequence[Drill], *, progress: Callable[..., None] = print
) -> dict[str, Any]:
    """Each drill in turn, with the telemetry counted (settled) around each."""
    backends = lab.backends
    results = []
    counts = await asyncio.to_thread(settled_counts, backends)
    started = counts.at
    for drill in drills:
        progress(f"drill {drill.name}: {drill.fault}", flush=True)
        result = await run_drill(lab, drill)
        after = await asyncio.to_thread(settled_counts, backends)
        grew = after.delta(counts)
        stored = await asyncio.to_thread(stored_spans, backends, counts.at)
        result["spans"] = {**span_stages(grew), "stored in the trace store": float(stored)}
        logs = await asyncio.to_thread(stored_logs, backends, counts.at, after.at)
        result["logs"] = {**log_stages(grew), "stored in the log store": float(logs)}
        bypassed = sum(value for key, value in grew.items() if key.startswith(f"{BYPASSED}|"))
        result["limits"]["bypassed"] = bypassed
        counts = after
        results.append(result)
        progress(_one_line(result), flush=True)
    sample = _recent_spans(backends, started, limit=200)
    per_span = span_bytes(sample)
    return {
        "plan": asdict(lab.plan),
        "budget_s": BUDGET_SECONDS,
        "latency_margin_s": LATENCY_MARGIN_SECONDS,
        "service_env": service_env(lab.plan),
        "drills": results,
        "span_memory": {
            "spans_measured": len(sample),
            "bytes_per_span": round(per_span),
            "queue": SDK_SPAN_QUEUE,
            "batch": SDK_SPAN_BATCH,
            # The queue, and one batch being retried by the exporter.
            "bound_mib": round((SDK_SPAN_QUEUE + SDK_SPAN_BATCH) * per_span / 2**20, 1),
        },
    }


def _one_line(result: dict[str, Any]) -> str:
    phases = "; ".join(
        f"{name}: {_outcomes(phase['outcomes'])}" for name, phase in result["phases"].items()
    )
    return (
        f"  {phases}; worst {result['worst_ms']} ms; recovered after "
        f"{result['recovered_after_s']} s; acknowledged turns lost "
        f"{result['acknowledged_turns_lost']} of {result['acknowledged_turns']}"
    )


def _outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{outcome}: {n}" for outcome, n in outcomes.items()) or "none"


def run(run_dir: Path, plan: Plan, drills: Sequence[Drill] = DRILLS) -> dict[str, Any]:
    """Start a stack, run ``drills`` in order, stop the stack; the report."""
    # The demo's API keys, and redis-full's filler clients.
    keys = run_dir / "api-keys.json"
    keys.write_text(json.dumps({**json.loads(DEMO_API_KEYS.read_text()), **FILLERS}))
    env = {**service_env(plan), "GATEWAY_API_KEYS_FILE": str(keys)}
    with native_stack(run_dir, Ports.free(), service_env=env) as stack:
        return asyncio.run(run_drills(Lab(stack, plan), drills))


def main(*, fast: bool, out_dir: Path) -> int:
    """``python -m experiments drills``: the full plan writes the committed report
    (``--out``, experiments/results/ by default); ``--fast`` a short run, for the tests."""
    plan = FAST if fast else FULL
    with tempfile.TemporaryDirectory(prefix="otel-chat-drills-") as run_dir:
        report = run(Path(run_dir), plan)
    write_report(report, out_dir)
    print(f"report: {out_dir / 'drills.md'}")
    return 0 if not violations(report) else 1


# --- The report ------------------------------------------------------------------------


def summary_tables(report: dict[str, Any]) -> str:
    """drills-summary.md: a table of what users saw and one of the telemetry's counts,
    a row per drill each, then the plan and the memory the Collector outages cost."""
    budget = report["budget_s"]
    rows = [
        "| drill | before | during | after | worst latency | recovered after | "
        "acknowledged turns lost | guessed keys refused during |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for drill in report["drills"]:
        phases = [_outcomes(drill["phases"][p]["outcomes"]) for p in ("before", "during", "after")]
        recovered = drill["recovered_after_s"]
        limits = drill["limits"]
        rows.append(
            f"| `{drill['name']}` | {' | '.join(phases)} | {drill['worst_ms']} ms | "
            f"{'never' if recovered is None else f'{recovered:.1f} s'} | "
            f"{drill['acknowledged_turns_lost']} of {drill['acknowledged_turns']} | "
            f"{limits['refused']} of {limits['guesses']}, {limits['bypassed']:g} bypassed |"
        )
    spans = [
        "| drill | spans ended | dropped (queue full) | export failed | exported | "
        "received by the trace store | stored | log records exported / stored |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for drill in report["drills"]:
        counts = " | ".join(f"{value:g}" for value in drill["spans"].values())
        logs = drill["logs"]
        spans.append(
            f"| `{drill['name']}` | {counts} | "
            f"{logs['exported']:g} / {logs['stored in the log store']:g} |"
        )
    plan = report["plan"]
    return (
        "\n".join(
            [
                *rows,
                "",
                *spans,
                "",
                f"Gateway budget {budget:g} s (`GATEWAY_REQUEST_BUDGET_SECONDS`); "
                f"{plan['workers']} sessions at one request per {plan['period']:g} s each; "
                f"{plan['before']:g} s before each fault, {plan['during']:g} s of it "
                f"({plan['collector_outage']:g} s for the Collector), then until every answer has "
                f"been good for {plan['settle']:g} s. Meanwhile a client guesses keys from another "
                f"address, one per {GUESS_PERIOD:g} s, past its limit of "
                f"{AUTH_FAILURES_PER_MINUTE} failures a minute: a limit that holds refuses all "
                "but those few, and `bypassed` counts requests the gateway served without one "
                "(`gateway.rate_limit.bypassed`). The SDKs' defaults (queue, batch, export "
                "timeout), but a 200-ms schedule delay and metrics every second, so that the "
                "counts settle quickly.",
                "",
                _memory_sentence(report),
            ]
        )
        + "\n"
    )


def _memory_sentence(report: dict[str, Any]) -> str:
    """What the Collector outages cost the services in memory, measured two ways."""
    growth: dict[str, float] = {}
    dropped = 0.0
    for drill in report["drills"]:
        if "rss_kib" in drill:
            dropped += drill["spans"]["dropped (queue full)"]
        for service, rss in drill.get("rss_kib", {}).items():
            if rss["before"] is not None and rss["peak_during"] is not None:
                grew = (rss["peak_during"] - rss["before"]) / 1024
                growth[service] = max(growth.get(service, grew), grew)
    memory = report["span_memory"]
    queues = (
        f"the SDKs' span queues filled ({dropped:g} spans dropped, counted)"
        if dropped
        else "the SDKs' span queues did not fill"
    )
    return (
        f"During the {report['plan']['collector_outage']:g}-s Collector outages {queues}, and "
        "the services' resident memory grew by at most "
        + ", ".join(f"{service} {mib:.1f} MiB" for service, mib in growth.items())
        + ". Spans account for about "
        f"{memory['bound_mib']} MiB of that per process: one waiting in an export queue takes "
        f"about {memory['bytes_per_span'] / 1024:.1f} KiB ({memory['spans_measured']} stored "
        "spans rebuilt and measured with tracemalloc), and a process holds at most "
        f"{memory['queue']} in its queue plus the batch of {memory['batch']} its exporter "
        "retries. The rest is log records, the batch serialized for each retry, and memory "
        "Python keeps once it has allocated it."
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Fault drills",
        "",
        "Generated by `make drills` (`python -m experiments drills`): do not edit.",
        f"Plan `{report['plan']['name']}`; the services ran with "
        + ", ".join(f"`{k}={v}`" for k, v in report["service_env"].items())
        + ".",
        "",
        summary_tables(report),
    ]
    for drill in report["drills"]:
        lines += [f"## `{drill['name']}`: {drill['fault']}", ""]
        lines += ["| phase | requests | outcomes | worst | median | errors (top 3) |"]
        lines += ["|---|---|---|---|---|---|"]
        for name, phase in drill["phases"].items():
            errors = "; ".join(f"{d} ({n})" for d, n in phase["details"].items()) or "—"
            lines.append(
                f"| {name} | {phase['requests']} | {_outcomes(phase['outcomes'])} | "
                f"{phase['worst_ms']} ms | {phase['median_ms']} ms | {errors} |"
            )
        lines += ["", "| spans | count |", "|---|---|"]
        lines += [f"| {stage} | {value:g} |" for stage, value in drill["spans"].items()]
        lines += ["", "| log records | count |", "|---|---|"]
        lines += [f"| {stage} | {value:g} |" for stage, value in drill["logs"].items()]
        extra = {
            k: v
            for k, v in drill.items()
            if k
            in ("telemetry_flowing_after_s", "rss_kib", "sessions", "sessions_vanished", "limits")
        }
        details = json.dumps({**extra, "notes": drill["notes"]}, indent=2)
        lines += ["", "```json", details, "```", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drills.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "drills-summary.md").write_text(summary_tables(report))
    (out_dir / "drills.md").write_text(markdown(report))
