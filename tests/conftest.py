import signal
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import registry
from stack.processes import free_ports, redis_ping
from stack.redis_servers import admin_url, redis_command, urls
from tests.support.processes import running


def pytest_configure(config: pytest.Config) -> None:
    """Treat SIGTERM (a CI timeout, `kill`) like Ctrl-C: fixtures still stop the
    processes they started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@dataclass(frozen=True)
class RedisServers:
    """The stack's two Redis servers (stack.redis_servers), each on its own port."""

    ports: dict[str, int]  # by registry name: redis, redis-limits

    def urls(self) -> dict[str, str]:
        """By registry name, without a user (services.registry adds each caller's)."""
        return urls(self.ports)

    def admin_url(self, redis: str) -> str:
        return admin_url(self.ports[redis])


@pytest.fixture(scope="session")
def redis_servers(log_dir: Path) -> Iterator[RedisServers]:
    """Real redis-servers on free loopback ports, for the whole test session: the data
    Redis and the limits Redis, each with its configuration and the demo's users."""
    ports = dict(zip(registry.REDISES, free_ports(len(registry.REDISES)), strict=True))
    with ExitStack() as servers:
        for redis, port in ports.items():
            command = redis_command(port, log_dir / f"{redis}-data", redis)
            servers.enter_context(running(redis, command, ready=redis_ping(port), log_dir=log_dir))
        yield RedisServers(ports)


@pytest.fixture(scope="session")
def redis_url(redis_servers: RedisServers) -> str:
    """The data Redis as its admin: for in-process apps that use one Redis for
    everything (the unit tests) and for tests that look into what was stored."""
    return redis_servers.admin_url(registry.REDIS)


@pytest.fixture(scope="session")
def limits_url(redis_servers: RedisServers) -> str:
    """The limits Redis as the gateway's ACL user (its password: the demo's, from
    GATEWAY_REDIS_PASSWORD_FILE), for a gateway started on its own."""
    return registry.redis_url_as("gateway", redis_servers.urls()[registry.REDIS_LIMITS])
