"""Real processes for tests: started, awaited (deadlines, no sleeps), always stopped."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from stack.native import REPO
from stack.processes import Probe, start, stop_pid, wait_ready


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
