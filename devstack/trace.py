"""``make trace``: send one chat request, then print its trace from the trace store.

The trace id comes back in the gateway's response; the trace store (Tempo in the
Docker stack, Jaeger natively) is polled until every service's spans arrived.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from devstack.otlp_json import StoredSpan, flatten
from devstack.processes import wait_until
from devstack.trace_id import full_trace_id
from services import registry

SERVICES = set(registry.names())


def send_chat(gateway: str, api_key: str, message: str | None = None) -> dict[str, Any]:
    body = json.dumps({"message": message or f"hello, what is a trace? ({uuid.uuid4().hex[:6]})"})
    request = urllib.request.Request(  # noqa: S310 (the gateway the user runs)
        f"{gateway}/chat",
        data=body.encode(),
        headers={"X-API-Key": api_key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        reply: dict[str, Any] = json.load(response)
        return reply


def fetch_trace(trace_url: str) -> list[StoredSpan]:
    """Spans at ``trace_url`` (Tempo /api/v2/traces/<id> or Jaeger /api/v3/traces/<id>)."""
    try:
        with urllib.request.urlopen(trace_url, timeout=5) as response:  # noqa: S310
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    trace = body.get("result") or body.get("trace") or body
    return flatten(trace.get("resourceSpans") or trace.get("batches") or [])


def render(spans: list[StoredSpan]) -> str:
    """An indented tree, children in start order, with durations."""
    children: dict[str, list[StoredSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            label = f"{'  ' * depth}{span.name}"
            millis = (span.end_ns - span.start_ns) / 1e6
            error = "  ERROR" if span.status_code == 2 else ""
            lines.append(f"{label:<48} {span.service:<8} {millis:8.1f} ms{error}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def show_trace(gateway: str, api_key: str, trace_url_of: str, grafana: str | None) -> None:
    reply = send_chat(gateway, api_key)
    trace_id = full_trace_id(reply["trace_id"])
    print(f"reply: {reply['reply']!r} (cached: {reply['cached']})")
    url = trace_url_of.format(trace_id=trace_id)

    def complete() -> list[StoredSpan] | None:
        spans = fetch_trace(url)
        return spans if {s.service for s in spans} >= SERVICES else None

    spans = wait_until(complete, timeout=30, what=f"trace {trace_id} in {url}", interval=0.5)
    print(f"\ntrace {trace_id}: {len(spans)} spans\n{render(spans)}\n")
    print(f"raw: {url}")
    if grafana:
        panes = {
            "a": {
                "datasource": "tempo",
                "queries": [{"refId": "A", "queryType": "traceql", "query": trace_id}],
                "range": {"from": "now-1h", "to": "now"},
            }
        }
        query = urllib.parse.urlencode({"schemaVersion": 1, "panes": json.dumps(panes)})
        print(f"Grafana: {grafana}/explore?{query}")
