"""``make verify-stack`` against the native stack, as a user runs it after ``make up``:
every check that applies natively passes (Jaeger standing in for Tempo, VictoriaLogs
for Loki), Grafana's is skipped with its reason, and the after-down check fails on a
stack that still runs; after ``make fault``, its scenario mode sees the alert (with the
rule as Prometheus loads it, rate windows and all) and does not without the fault. The
Docker side of the same script runs in .github/workflows/stack.yml.

It runs as ``make verify-stack`` runs it (``python -m stack.verify``), pointed at this
session's stack through ``STACK_RUN_DIR`` (the stack's recorded ports).
"""

import subprocess
from collections.abc import Iterator

import pytest

from stack.native import NativeStack, Ports, native_stack
from stack.verify import CHECKS
from tests.support.processes import run_on_stack


def verify(stack: NativeStack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_on_stack(stack.run_dir, "stack.verify", *args, timeout=600)


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


@pytest.fixture(scope="module")
def stack_to_break(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """A stack of its own: a fault (and the alert it leaves for minutes) must not reach
    the session's. Metrics every second, and no rate limit in the way of the traffic."""
    fast = {"OTEL_METRIC_EXPORT_INTERVAL": "1000", "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000"}
    run_dir = tmp_path_factory.mktemp("verify-faults")
    with native_stack(run_dir, Ports.free(), service_env=fast) as running:
        yield running


def test_no_fault_no_alert(stack_to_break: NativeStack) -> None:
    result = verify(stack_to_break, "--scenario", "chat-errors", "--timeout", "15")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL alert HighErrorRate: not active within 15 s of chat-errors" in result.stdout


def test_a_fault_reaches_its_alert(stack_to_break: NativeStack) -> None:
    """`make fault SCENARIO=chat-errors`, `make verify-stack SCENARIO=chat-errors`,
    `make fault-clear`: the steps of stack.yml, natively."""
    assert run_on_stack(stack_to_break.run_dir, "stack", "fault", "chat-errors").returncode == 0
    try:
        result = verify(stack_to_break, "--scenario", "chat-errors", "--timeout", "240")
    finally:
        assert run_on_stack(stack_to_break.run_dir, "stack", "fault", "--clear").returncode == 0
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS alert HighErrorRate: " in result.stdout and "during chat-errors" in result.stdout
