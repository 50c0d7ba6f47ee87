"""A trace id that starts with zeros, given the way Tempo's search returns it (zeros
dropped), still finds its trace and its logs once traces/trace_id.py restores it."""

import secrets
import time

import httpx

from stack.backends import Backends
from stack.native import NativeStack
from stack.processes import wait_until
from traces.otlp_json import flatten


def test_a_trace_id_without_its_leading_zeros_finds_trace_and_logs(
    backends: Backends, stack: NativeStack, injected_spans: list[int]
) -> None:
    trace_id = "0001" + secrets.token_hex(14)  # 32 hex digits, three of them leading zeros
    short = trace_id.lstrip("0")  # what Tempo's search API would hand out
    span_id, now = secrets.token_hex(8), time.time_ns()
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "zeros"}}]}
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "GET /zeros",
        "kind": 2,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1_000_000),
    }
    record = {
        "timeUnixNano": str(now),
        "severityText": "INFO",
        "body": {"stringValue": "a log line of a trace whose id starts with zeros"},
        "traceId": trace_id,
        "spanId": span_id,
    }
    bodies = {
        "traces": {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]},
        "logs": {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]},
    }
    for signal, body in bodies.items():
        url = f"http://127.0.0.1:{stack.ports.otlp_http}/v1/{signal}"
        response = httpx.post(url, json=body, timeout=10)
        assert response.status_code == 200, response.text
    injected_spans.append(1)

    spans = wait_until(lambda: flatten(backends.trace(short)) or None, timeout=60, what="span")
    assert [s.span_id for s in spans] == [span_id]
    logs = wait_until(lambda: backends.trace_logs(short) or None, timeout=60, what="log line")
    assert [log["trace_id"] for log in logs] == [trace_id]
    # Without the zeros the log store finds nothing: an exact match needs all 32 digits.
    assert backends.logs(f'trace_id:"{short}"') == []
