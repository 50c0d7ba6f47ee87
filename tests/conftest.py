import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.native import redis_command
from devstack.processes import free_port, redis_ping
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


@pytest.fixture(scope="session")
def redis_url(log_dir: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole test session."""
    port = free_port()
    command = redis_command(port, log_dir / "redis-data")
    with running("redis", command, ready=redis_ping(port), log_dir=log_dir):
        yield f"redis://127.0.0.1:{port}/0"
