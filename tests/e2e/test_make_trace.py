"""``make trace`` against the native stack: what it prints is the request's story.

It runs as ``make trace`` runs it (``python -m traces``), pointed at this
session's stack through ``STACK_RUN_DIR`` (the stack's recorded ports).
"""

import json
import subprocess
import uuid

import pytest

from services import registry
from stack.backends import Backends
from stack.native import NativeStack
from tests.support.processes import run_on_stack
from traces.otlp_json import flatten
from traces.stores import victorialogs_lines
from traces.waterfall import redis_commands


def make_trace(stack: NativeStack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_on_stack(stack.run_dir, "traces", *args)


@pytest.fixture(scope="module")
def printed(stack: NativeStack) -> tuple[str, str]:
    """One new request's trace id and what make trace printed for it."""
    result = make_trace(stack, "--message", f"what is a span? {uuid.uuid4().hex[:6]}")
    assert result.returncode == 0, result.stderr
    trace_id = result.stdout.split("\ntrace ", 1)[1].split()[0]
    return trace_id, result.stdout


def _waterfall(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("span ")) + 1
    return lines[start : lines.index("", start)]


def test_every_service_has_its_spans_in_the_waterfall(printed: tuple[str, str]) -> None:
    _, text = printed
    services = {line[35:43].strip() for line in _waterfall(text)}
    assert services == set(registry.names())
    assert text.startswith("POST /chat → 200 · cached: false")


def test_redis_spans_come_in_causal_order_under_their_routes(
    printed: tuple[str, str], backends: Backends
) -> None:
    trace_id, text = printed
    stored = sorted(
        (s for s in flatten(backends.trace(trace_id)) if s.is_redis), key=lambda s: s.start_ns
    )
    lines = _waterfall(text)
    redis_lines = [i for i, line in enumerate(lines) if " redis=" in line]
    printed_commands = [lines[i].rsplit(" redis=", 1)[1].split()[0] for i in redis_lines]
    assert printed_commands == [redis_commands(span.attributes) for span in stored]
    assert len(printed_commands) >= 3  # lookup, store the reply, append the turn

    def depth(line: str) -> int:  # where the name starts, after the tree guides
        return len(line) - len(line.lstrip(" │├└─"))

    callers = {s.name for s in registry.SERVICES if s.redis is not None}
    for i in redis_lines:  # each under a server span (a route) of a service that calls Redis
        parent = next(line for line in reversed(lines[:i]) if depth(line) < depth(lines[i]))
        assert parent[35:43].strip() in callers and " route=" in parent, parent
    assert {lines[i][35:43].strip() for i in redis_lines} == callers


def test_the_traces_log_lines_follow_in_time_order(
    printed: tuple[str, str], backends: Backends
) -> None:
    trace_id, text = printed
    logs_part = text.split("\nlog lines (VictoriaLogs, ", 1)[1]
    stored = victorialogs_lines(
        "\n".join(json.dumps(record) for record in backends.logs(f'trace_id:"{trace_id}"'))
    )
    assert {log.service for log in stored} >= {"gateway", "chat"}
    assert logs_part.startswith(f"{len(stored)}, in time order)")  # all of them
    positions = [logs_part.index(log.body) for log in stored]
    assert positions == sorted(positions)
    assert f"/api/v3/traces/{trace_id}" in text  # the Jaeger link
    assert "/select/vmui/#/?query=trace_id%3A%22" + trace_id in text  # VictoriaLogs' UI


def test_an_existing_trace_by_id_without_leading_zeros_as_json(
    printed: tuple[str, str], stack: NativeStack
) -> None:
    trace_id, text = printed
    result = make_trace(stack, "--id", trace_id.lstrip("0").upper(), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["trace_id"] == trace_id and data["request"] is None
    assert len(data["spans"]) == len(_waterfall(text))
    assert data["spans"][0]["depth"] == 0 and data["spans"][0]["service"] == registry.ENTRY.name


def test_an_unknown_trace_fails_with_a_message(stack: NativeStack) -> None:
    result = make_trace(stack, "--id", "abc", "--timeout", "2")
    assert result.returncode == 1
    assert "trace 00000000000000000000000000000abc not found in Jaeger" in result.stderr
    malformed = make_trace(stack, "--id", "not-a-trace")
    assert malformed.returncode == 2 and "malformed trace id" in malformed.stderr
