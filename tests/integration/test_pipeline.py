"""Real processes, real Redis, real OTLP: one request followed across the chain."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from services import registry
from services.gateway.settings import DEMO_API_KEY
from stack.processes import free_port, wait_until
from tests.integration.conftest import FAST_EXPORT, Stack, service_process
from tests.support.otlp import ReceivedSpan, otlp_receiver
from traces.otlp_json import missing_parts

SERVICES = registry.names()
KEY = {"X-API-Key": DEMO_API_KEY}


def _chat(stack: Stack, message: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{stack.url(registry.ENTRY.name)}/chat", json={"message": message}, headers=KEY, timeout=10
    )
    return response, time.monotonic() - started


def _complete_trace(stack: Stack, trace_id: str) -> list[ReceivedSpan]:
    """The trace once every call in it has arrived (traces.otlp_json.missing_parts)."""

    def probe() -> list[ReceivedSpan] | None:
        spans = stack.receiver.spans_of(trace_id)
        return spans if not missing_parts(spans) else None

    try:
        return wait_until(probe, timeout=15, what=f"trace {trace_id}")
    except TimeoutError as exc:
        spans = stack.receiver.spans_of(trace_id)
        seen = [(s.service, s.span.name) for s in spans]
        missing = missing_parts(spans)
        raise AssertionError(f"incomplete trace: missing {missing}, got {seen}") from exc


def test_two_requests_one_trace_each_and_the_second_is_a_cache_hit(stack: Stack) -> None:
    message = f"hello, is this cached? {uuid.uuid4()}"
    first, first_seconds = _chat(stack, message)
    second, second_seconds = _chat(stack, message)
    assert first.status_code == second.status_code == 200
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert second_seconds < first_seconds  # the first one "thought" for 300+ ms

    for response in (first, second):
        trace_id = response.json()["trace_id"]
        assert response.headers["x-trace-id"] == trace_id
        spans = _complete_trace(stack, trace_id)
        by_id = {s.span_id: s for s in spans}
        # Every server span (but the entry service's, the root) is the child of a
        # client span of the service before it in the chain.
        callers = {service.calls: service.name for service in registry.SERVICES}
        for span in spans:
            if span.span.kind != Span.SPAN_KIND_SERVER:
                continue
            if span.service == registry.ENTRY.name:
                assert span.parent_span_id == ""
                continue
            parent = by_id[span.parent_span_id]
            assert parent.span.kind == Span.SPAN_KIND_CLIENT
            assert parent.service == callers[span.service]
        # Redis commands: the cache's own, and the gateway's rate-limit checks,
        # each under its service's server span.
        for redis in (s for s in spans if s.attributes.get("db.system.name") == "redis"):
            parent = by_id[redis.parent_span_id]
            assert (parent.service, parent.span.kind) == (redis.service, Span.SPAN_KIND_SERVER)
            assert registry.by_name(redis.service).redis is not None
        assert {s.service for s in spans} == set(SERVICES)
        assert {s.resource["deployment.environment.name"] for s in spans} == {"test"}
        downstream = [s for s in spans if s.service != registry.ENTRY.name]
        assert {s.attributes.get("client.id") for s in downstream} == {"demo-client"}

        def logs_of_both(tid: str = trace_id) -> bool | None:
            services = {log.service for log in stack.receiver.logs_of(tid)}
            return services >= {"gateway", "chat"} or None

        wait_until(logs_of_both, timeout=15, what=f"gateway and chat logs of {trace_id}")


def test_every_service_exports_metrics(stack: Stack) -> None:
    _chat(stack, "metrics please")
    expected = {
        "gateway": {
            "http.server.request.duration",
            "http.client.request.duration",
            "chat.requests",
        },
        "chat": {"http.server.request.duration", "chat.replies", "chat.reply.duration"},
        "cache": {"http.server.request.duration", "cache.lookups"},
    }

    # The SDK's own counts of what it processed and exported, in every service.
    sdk = {"otel.sdk.processor.span.processed", "otel.sdk.exporter.span.exported"}
    expected = {service: names | sdk for service, names in expected.items()}

    def probe() -> bool | None:
        seen = stack.receiver.metrics
        return all(names <= seen.get(service, set()) for service, names in expected.items()) or None

    wait_until(probe, timeout=15, what=f"metrics {expected}, got {stack.receiver.metrics}")


def test_each_cache_worker_process_has_its_own_providers(stack: Stack) -> None:
    def instances() -> set[object]:
        return {
            s.resource["service.instance.id"] for s in stack.receiver.spans if s.service == "cache"
        }

    def probe() -> bool | None:
        # Several new connections at once, so both workers accept some.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: httpx.get(f"{stack.url('cache')}/stats", timeout=5), range(8)))
        return len(instances()) >= 2 or None

    wait_until(probe, timeout=30, what="spans from two cache worker processes")


def test_a_slow_downstream_is_a_504(stack: Stack, log_dir: Path) -> None:
    port = free_port()
    env = {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.receiver.endpoint,
        "GATEWAY_CHAT_URL": stack.url("chat"),
        "GATEWAY_READ_TIMEOUT_SECONDS": "0.05",
    }
    with service_process("gateway", port, log_dir, env):
        response = httpx.post(
            f"http://127.0.0.1:{port}/chat",
            json={"message": f"think slowly {uuid.uuid4()}"},
            headers=KEY,
            timeout=10,
        )
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "chat: no answer in time."


def test_services_keep_serving_without_a_collector(stack: Stack, log_dir: Path) -> None:
    port = free_port()
    env = {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nobody there
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "GATEWAY_CHAT_URL": stack.url("chat"),
    }
    with service_process("gateway", port, log_dir, env):
        for _ in range(3):
            response = httpx.post(
                f"http://127.0.0.1:{port}/chat", json={"message": "hi"}, headers=KEY, timeout=10
            )
            assert response.status_code == 200
    log = (log_dir / f"gateway-{port}.log").read_text()
    assert "Failed to export" in log  # the failure is logged, not raised


def test_shutdown_flushes_every_signal(redis_url: str, log_dir: Path) -> None:
    """With export delays far longer than the test, only the shutdown flush delivers."""
    port = free_port()
    with otlp_receiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "OTEL_BLRP_SCHEDULE_DELAY": "600000",
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",
            "CACHE_REDIS_URL": redis_url,
        }
        with service_process("cache", port, log_dir, env):
            assert httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).status_code == 200
            assert receiver.spans == []
        assert {s.span.name for s in receiver.spans} >= {"GET /stats"}
        assert "http.server.request.duration" in receiver.metrics["cache"]
        assert any(log.record.body.string_value == "cache service started" for log in receiver.logs)
