"""Real processes for tests: started, awaited (deadlines, no sleeps), always stopped."""

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from devstack.native import REPO
from devstack.processes import (
    Probe,
    free_port,
    http_ok,
    redis_ping,
    start,
    stop_pid,
    wait_ready,
    wait_until,
)

__all__ = ["free_port", "http_ok", "redis_ping", "running", "wait_until"]


@contextmanager
def running(
    name: str,
    command: list[str],
    *,
    ready: Probe,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Iterator[None]:
    """Run ``command`` until the block ends; its output goes to ``log_dir/name.log``."""
    log_path = log_dir / f"{name}.log"
    process = start(command, log_path=log_path, env=env or {}, cwd=REPO)
    try:
        wait_ready(name, process, ready, log_path=log_path, timeout=timeout)
        yield
    finally:
        stop_pid(process.pid)


def uvicorn_command(service: str, port: int) -> list[str]:
    app = f"services.{service}.main:create_app"
    return [sys.executable, "-m", "uvicorn", app, "--factory", "--port", str(port)]


def redis_command(port: int) -> list[str]:
    """A throwaway redis-server: loopback only, nothing persisted."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
