"""``make trace``: the whole story of one request, from the terminal.

Sends one chat request to the gateway (or takes ``ID=<trace id>`` of any earlier
one), waits until the trace store has the whole trace, then prints its waterfall,
its log lines under the spans that wrote them, and links to the trace and its
logs in Grafana (Docker) or in Jaeger and VictoriaLogs (``make dev``).

Which stack: a native one recorded as running in ``.run/`` (``make dev``, or
``make up`` without Docker), otherwise the Docker stack on localhost.
"""

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from stack.native import NativeStack
from traces.otlp_json import StoredSpan, missing_parts
from traces.stores import DockerStores, LogLine, NativeStores, StackDownError, Stores
from traces.trace_id import full_trace_id
from traces.waterfall import Request, TraceView

# A traceparent or traceresponse header value: the trace id is its second field.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


class TraceError(Exception):
    """``make trace`` cannot show the trace; the message says why and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_trace_id(raw: str) -> str:
    """The 32-hex-digit trace id in ``raw`` (traces.trace_id.full_trace_id: any
    case, leading zeros or not), or in a whole traceparent/traceresponse value."""
    text = raw.strip().lower()
    if header := _TRACEPARENT.fullmatch(text):
        text = header.group(1)
    try:
        return full_trace_id(text)
    except ValueError as exc:
        raise TraceError(
            f"malformed trace id {raw!r}: expected 1 to 32 hex digits, not all zero "
            "(e.g. the X-Trace-Id header of a response)",
            exit_code=2,
        ) from exc


def find_stores(run_dir: Path) -> Stores:
    """The native stack recorded in ``run_dir`` if it runs, otherwise Docker's."""
    native = NativeStack.load(run_dir)
    if native is not None and native.running:
        return NativeStores(native.ports)
    return DockerStores()


def send_chat(stores: Stores, api_key: str, message: str | None, session: str | None) -> Request:
    """POST /chat to the gateway; an error answer is a Request too (its trace is the story)."""
    body: dict[str, str] = {
        "message": message or f"hello, what is a trace? ({uuid.uuid4().hex[:6]})"
    }
    if session:
        body["session_id"] = session
    request = urllib.request.Request(  # noqa: S310 (the gateway of the stack we found)
        f"{stores.gateway}/chat",
        data=json.dumps(body).encode(),
        headers={"X-API-Key": api_key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return Request(response.status, json.load(response))
    except urllib.error.HTTPError as exc:
        # A problem+json body; it carries the trace id like a reply does.
        return Request(exc.code, json.loads(exc.read() or b"{}"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        gateway = f"the {stores.stack} stack's gateway at {stores.gateway}"
        raise TraceError(f"{gateway} does not answer ({reason}): {stores.hint}") from exc


def wait_for_trace(stores: Stores, trace_id: str, *, timeout: float) -> list[StoredSpan]:
    """The trace once it is complete (traces.otlp_json.missing_parts); TraceError
    saying what is missing when the deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        spans = stores.spans(trace_id)
        missing = missing_parts(spans)
        if not missing:
            return spans
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    where = f"{stores.trace_store} ({stores.trace_url(trace_id)})"
    if not spans:
        raise TraceError(f"trace {trace_id} not found in {where} within {timeout:.0f} s")
    services = ", ".join(sorted({span.service for span in spans}))
    raise TraceError(
        f"trace {trace_id} incomplete in {where} after {timeout:.0f} s: {len(spans)} spans "
        f"from {services}, missing {'; '.join(missing)}"
    )


def wait_for_logs(
    fetch: Callable[[], list[LogLine]], *, timeout: float, settle: float = 1.0
) -> list[LogLine]:
    """The log lines once two reads ``settle`` seconds apart agree, or the last read
    at ``timeout``. (Logs travel apart from spans, and how many a trace has is not
    known in advance: a trace may have none.)"""
    deadline = time.monotonic() + timeout
    previous = fetch()
    while time.monotonic() < deadline:
        time.sleep(settle)
        current = fetch()
        if current and current == previous:
            return current
        previous = current
    return previous


def trace_view(
    stores: Stores,
    *,
    trace_id: str | None,
    message: str | None,
    session: str | None,
    api_key: str,
    timeout: float,
    log_settle: float = 1.0,
) -> TraceView:
    """Everything ``make trace`` shows, for a new request or for ``trace_id``."""
    request = None
    if trace_id is not None:
        trace_id = parse_trace_id(trace_id)  # a typo fails before anything is sent
    else:
        request = send_chat(stores, api_key, message, session)
        trace_id = parse_trace_id(str(request.reply.get("trace_id", "")))
    try:
        spans = wait_for_trace(stores, trace_id, timeout=timeout)
        start, end = min(s.start_ns for s in spans), max(s.end_ns for s in spans)
        logs = wait_for_logs(
            lambda: stores.logs(trace_id, start, end), timeout=min(timeout, 10), settle=log_settle
        )
    except StackDownError as exc:
        raise TraceError(str(exc)) from exc
    return TraceView(
        trace_id=trace_id,
        spans=spans,
        logs=logs,
        trace_store=stores.trace_store,
        log_store=stores.log_store,
        links=stores.links(trace_id, start, end),
        request=request,
    )
