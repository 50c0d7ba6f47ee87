"""Start processes, wait until they are ready, stop them: for ``make dev`` and the tests.

Readiness is polled against a ``time.monotonic()`` deadline, never a fixed
sleep; a timeout names the last failure and shows the process's output.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

Probe = Callable[[], object | None]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports free on loopback right now. (Taken one at a time
    with free_port, the kernel may hand the same port out twice.)"""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections lingering in TIME_WAIT do not count:
    servers bind with SO_REUSEADDR, so this check does too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Call ``probe`` until it returns something other than None; exceptions retry."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except Exception as exc:  # the probe failing is the reason to try again
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s (last error: {last_error!r})")
        time.sleep(interval)


def http_ok(url: str) -> Probe:
    """Ready when ``url`` answers 200 (loopback URLs only)."""

    def probe() -> bool | None:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return True if response.status == 200 else None

    return probe


def redis_ping(port: int) -> Probe:
    """Redis answers PING, asked as its ``probe`` user (PING only, any password: see
    deploy/redis/generate_acl.py); a Redis without users takes the AUTH as an error and
    still answers the PING."""

    def probe() -> bool | None:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"AUTH probe any\r\nPING\r\n")
            answer = b""
            while answer.count(b"\r\n") < 2:  # AUTH's reply, then PING's
                chunk = sock.recv(256)
                if not chunk:
                    return None
                answer += chunk
            return True if b"+PONG\r\n" in answer else None

    return probe


def start(
    command: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path,
    own_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command``, its output to ``log_path``.

    ``own_session``: for a stack that outlives this process (``up --detach``),
    and so a terminal's Ctrl-C reaches only the orchestrator, which then stops
    everything in order. Otherwise the process stays in our process group, so
    whoever kills the group (a CI timeout) takes it down too.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=own_session,
        )


def wait_ready(
    name: str, process: subprocess.Popen[bytes], probe: Probe, *, log_path: Path, timeout: float
) -> None:
    def ready_while_alive() -> object | None:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        return probe()

    try:
        wait_until(ready_while_alive, timeout=timeout, what=f"{name} ready")
    except Exception as exc:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        raise RuntimeError(f"{exc}\n--- last output of {name} ({log_path}) ---\n{tail}") from exc


def stop_pid(pid: int, *, grace: float = 15) -> None:
    """SIGTERM (a clean shutdown flushes telemetry), SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise just ask whether it exists.
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (None if there is none): with the pid, an identity
    that survives pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): ask ps
        result = subprocess.run(
            ["ps", "-p", str(pid), "-o", "lstart="],  # noqa: S607 (ps from PATH)
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() or None
    # Field 22, counted after the parenthesised command name (which may hold spaces).
    return stat.rsplit(")", 1)[1].split()[19]
