"""Start real processes for tests, wait until they are ready, always clean up.

Readiness is polled against a ``time.monotonic()`` deadline (never a fixed
sleep); on timeout the error names the last failure and the process's output.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Call ``probe`` until it returns a value other than None (or raises no more)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except Exception as exc:  # the probe's failure is the reason to retry
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s (last error: {last_error!r})")
        time.sleep(interval)


def http_ok(url: str) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL)
            return True if response.status == 200 else None

    return probe


@contextmanager
def running(
    name: str,
    command: list[str],
    *,
    ready: Callable[[], object | None],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; its output goes to ``log_dir/name.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready_while_alive() -> object | None:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode}")
                return ready()

            try:
                wait_until(ready_while_alive, timeout=timeout, what=f"{name} ready")
            except Exception as exc:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}\n--- {name} output ---\n{tail}") from exc
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes], *, grace: float = 15) -> None:
    """SIGTERM (a clean shutdown flushes telemetry), then SIGKILL after ``grace``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def uvicorn_command(service: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"services.{service}.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]


def redis_ping(port: int) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return True if sock.recv(64).startswith(b"+PONG") else None

    return probe


def redis_command(port: int) -> list[str]:
    """A throwaway redis-server: loopback only, nothing persisted."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
