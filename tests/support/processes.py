"""Real processes for tests: started, awaited (deadlines, no sleeps), always stopped."""

import os
import subprocess
import sys
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


def run_on_stack(
    run_dir: Path, module: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` as the Makefile runs it (``make trace``, ``make fault``,
    ``make verify-stack``), pointed at the native stack recorded in ``run_dir``."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "STACK_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
