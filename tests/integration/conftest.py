"""The services as real uvicorn processes, exporting to a test OTLP receiver."""

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services import registry
from stack.native import uvicorn_command, uvicorn_settings
from stack.processes import free_port, free_ports, http_ok
from stack.redis_servers import password_environment
from tests.conftest import RedisServers
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
    ports: dict[str, int]  # each service's (first replica's) port
    replicas: dict[str, list[int]] = field(default_factory=dict)  # every replica's
    admin: dict[str, list[int]] = field(default_factory=dict)  # every replica's admin port

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def admin_url(self, service: str) -> str:
        """Where the (first replica of the) service's admin endpoints are."""
        return f"http://127.0.0.1:{self.admin[service][0]}"


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    admin_url: str  # its admin listener's, if it has an admin key


@contextmanager
def service_process(
    service: str,
    port: int,
    log_dir: Path,
    env: dict[str, str],
    extra_args: tuple[str, ...] = (),
    *,
    admin_port: int | None = None,
) -> Iterator[ServiceProcess]:
    """``service`` on ``port``, its admin listener (with an admin key in ``env``) on
    ``admin_port`` or a free port: never the registry's, which ``make dev`` uses."""
    admin_port = admin_port or free_port()
    command = [*uvicorn_command(service, port), *extra_args]
    ready = http_ok(f"http://127.0.0.1:{port}/readyz")
    env = {**uvicorn_settings(service), f"{service.upper()}_ADMIN_PORT": str(admin_port), **env}
    with running(f"{service}-{port}", command, ready=ready, log_dir=log_dir, env=env):
        yield ServiceProcess(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")


@contextmanager
def chain(
    receiver: OtlpReceiver,
    redis: RedisServers,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    cache_workers: int = 2,
    replicas: Mapping[str, int] | None = None,
) -> Iterator[Stack]:
    """Every service of services/registry.py as a uvicorn process on a free port
    (``replicas[service]`` processes of it, each on its own), callees first,
    exporting to ``receiver``, each reaching its Redis of ``redis`` as its own ACL user;
    ``env`` adds to or overrides their environment."""
    counts = [(service, (replicas or {}).get(service, 1)) for service in registry.names()]
    spare = iter(free_ports(2 * sum(count for _, count in counts)))  # a port and an admin port
    every = {service: [next(spare) for _ in range(count)] for service, count in counts}
    admin = {service: [next(spare) for _ in range(count)] for service, count in counts}
    ports = {service: replica_ports[0] for service, replica_ports in every.items()}
    # A caller takes its callee's replicas in turn (services/common/balancing.py).
    urls = {s: ",".join(f"http://127.0.0.1:{p}" for p in ps) for s, ps in every.items()}
    service_env = {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        "CHAT_THINKING_BASE_MS": "300",
        **registry.dependency_environment({**urls, **redis.urls()}),
        **password_environment(),
        **(env or {}),
    }
    with ExitStack() as processes:
        # Two cache workers by default: telemetry must survive uvicorn's workers.
        workers = {"cache": cache_workers}
        for service in registry.start_order():
            name = service.name
            extra = ("--workers", str(workers[name])) if name in workers else ()
            for port, admin_port in zip(every[name], admin[name], strict=True):
                processes.enter_context(
                    service_process(name, port, log_dir, service_env, extra, admin_port=admin_port)
                )
        yield Stack(receiver=receiver, ports=ports, replicas=every, admin=admin)


@pytest.fixture(scope="module")
def stack(redis_servers: RedisServers, log_dir: Path) -> Iterator[Stack]:
    with otlp_receiver() as receiver, chain(receiver, redis_servers, log_dir) as running:
        yield running
