"""``make verify-stack`` against the native stack, as a user runs it after ``make up``:
every check that applies natively passes (Jaeger standing in for Tempo, VictoriaLogs
for Loki), Grafana's is skipped with its reason, and the after-down check fails on a
stack that still runs. The Docker side of the same script runs in
.github/workflows/stack.yml.

It runs as ``make verify-stack`` runs it (``python -m stack.verify``), pointed at this
session's stack through ``STACK_RUN_DIR`` (the stack's recorded ports).
"""

import os
import subprocess
import sys

from stack.native import REPO, NativeStack
from stack.verify import CHECKS


def verify(stack: NativeStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack.verify", *args],
        cwd=REPO,
        env={**os.environ, "STACK_RUN_DIR": str(stack.run_dir)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_every_check_that_applies_natively_passes(stack: NativeStack) -> None:
    result = verify(stack)
    print(result.stdout)  # what a user sees, in the test's report
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("verifying the native stack\n")
    for check in CHECKS:
        if check != "grafana":
            assert f"\nPASS {check}: " in result.stdout, result.stdout
    assert "\nSKIP grafana: no Grafana in the native stack" in result.stdout
    # The trace, printed as make trace prints it, from Jaeger.
    assert "POST /chat → 200" in result.stdout
    assert (
        "spans in Jaeger" in result.stdout
        and "log lines of the trace in VictoriaLogs" in result.stdout
    )


def test_after_down_fails_while_the_stack_runs(stack: NativeStack) -> None:
    result = verify(stack, "--after-down", "--stack", "native")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL after-down: " in result.stdout
    assert "gateway (pid " in result.stdout and "still runs" in result.stdout
