"""The three services as real uvicorn processes, exporting to a test OTLP receiver."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.native import uvicorn_command, uvicorn_settings
from devstack.processes import free_port, http_ok
from tests.support.otlp import OtlpReceiver, otlp_receiver
from tests.support.processes import running

# Short delays so telemetry arrives within a test's patience; defaults are 5-60 s.
FAST_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
}


@dataclass(frozen=True)
class Stack:
    receiver: OtlpReceiver
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@contextmanager
def service_process(
    service: str,
    port: int,
    log_dir: Path,
    env: dict[str, str],
    extra_args: tuple[str, ...] = (),
) -> Iterator[None]:
    command = [*uvicorn_command(service, port), *extra_args]
    ready = http_ok(f"http://127.0.0.1:{port}/readyz")
    env = {**uvicorn_settings(service), **env}
    with running(f"{service}-{port}", command, ready=ready, log_dir=log_dir, env=env):
        yield


@contextmanager
def chain(
    receiver: OtlpReceiver,
    redis_url: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    cache_workers: int = 2,
) -> Iterator[Stack]:
    """gateway -> chat -> cache -> Redis as uvicorn processes, exporting to ``receiver``;
    ``env`` adds to or overrides their environment."""
    ports = {service: free_port() for service in ("gateway", "chat", "cache")}
    service_env = {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        "CACHE_REDIS_URL": redis_url,
        "GATEWAY_REDIS_URL": redis_url,
        "CHAT_CACHE_URL": f"http://127.0.0.1:{ports['cache']}",
        "CHAT_THINKING_BASE_MS": "300",
        "GATEWAY_CHAT_URL": f"http://127.0.0.1:{ports['chat']}",
        **(env or {}),
    }
    with ExitStack() as processes:
        # Two cache workers by default: telemetry must survive uvicorn's workers.
        cache_args = ("--workers", str(cache_workers))
        processes.enter_context(
            service_process("cache", ports["cache"], log_dir, service_env, cache_args)
        )
        for service in ("chat", "gateway"):
            processes.enter_context(service_process(service, ports[service], log_dir, service_env))
        yield Stack(receiver=receiver, ports=ports)


@pytest.fixture(scope="module")
def stack(redis_url: str, log_dir: Path) -> Iterator[Stack]:
    with otlp_receiver() as receiver, chain(receiver, redis_url, log_dir) as running:
        yield running
