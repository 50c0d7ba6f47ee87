"""Spans as trace stores return them in OTLP JSON (Jaeger's /api/v3, Tempo's
/api/v2), flattened; and whether a trace has all arrived: for ``make trace`` and
the tests."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services import registry

SERVER, CLIENT = 2, 3  # OTLP span kinds


def attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON key/values as a plain dict (intValue arrives as a string)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        (kind, value), *_ = pair["value"].items() or [("", None)]
        values[pair["key"]] = int(value) if kind == "intValue" else value
    return values


@dataclass(frozen=True)
class StoredSpan:
    service: str
    resource: dict[str, Any]
    name: str
    kind: int
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    start_ns: int = 0
    end_ns: int = 0
    event_names: tuple[str, ...] = ()  # e.g. "exception"

    @property
    def is_redis(self) -> bool:
        return _is_redis(self.attributes)


def flatten(resource_spans: list[dict[str, Any]]) -> list[StoredSpan]:
    """All spans of OTLP JSON ``resourceSpans`` (Tempo's older key: ``batches``)."""
    spans = []
    for block in resource_spans:
        resource = attributes(block["resource"].get("attributes", []))
        for scope in block.get("scopeSpans", []):
            for span in scope.get("spans", []):
                spans.append(
                    StoredSpan(
                        service=resource["service.name"],
                        resource=resource,
                        name=span["name"],
                        kind=span.get("kind", 0),
                        span_id=span["spanId"],
                        parent_span_id=span.get("parentSpanId", ""),
                        attributes=attributes(span.get("attributes", [])),
                        status_code=span.get("status", {}).get("code", 0),
                        start_ns=int(span.get("startTimeUnixNano", 0)),
                        end_ns=int(span.get("endTimeUnixNano", 0)),
                        event_names=tuple(e["name"] for e in span.get("events", [])),
                    )
                )
    return spans


# --- Has the whole trace arrived? ---------------------------------------------------------


class SpanShape(Protocol):
    """What the completeness check reads; StoredSpan and the tests' received spans have it."""

    @property
    def service(self) -> str: ...
    @property
    def kind(self) -> int: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


def missing_parts(spans: Iterable[SpanShape]) -> list[str]:
    """What a trace still lacks (empty when it is complete).

    Spans of one trace arrive in pieces, from each service's exporter on its own
    schedule. The trace is complete when it has its root (no parent, or the entry
    service's server span under a caller's traceparent) and every other span's
    parent; when every HTTP call that got an answer has the callee's server span;
    and when every server span of the service that calls Redis has Redis spans
    under it (each of its routes uses Redis). A trace of a failed request is
    complete with the spans it has.
    """
    spans = list(spans)
    if not spans:
        return ["any span"]
    missing = []
    ids = {span.span_id for span in spans}
    orphans = [span for span in spans if span.parent_span_id not in ids]
    roots = [span for span in orphans if _is_root(span)]
    if len(roots) != 1:
        missing.append("the root span")
    if len(orphans) > len(roots):
        missing.append(f"the parents of {len(orphans) - len(roots)} span(s)")
    server_parents = {span.parent_span_id for span in spans if span.kind == SERVER}
    redis_parents = {span.parent_span_id for span in spans if _is_redis(span.attributes)}
    redis_callers = {
        service.name for service in registry.SERVICES if service.calls == registry.REDIS
    }
    for span in spans:
        answered = "http.response.status_code" in span.attributes
        if span.kind == CLIENT and answered and span.span_id not in server_parents:
            missing.append(f"the server span answering {span.service}'s call {span.span_id}")
        calls_redis = span.kind == SERVER and span.service in redis_callers
        if calls_redis and span.span_id not in redis_parents:
            missing.append(f"the Redis spans under {span.service}'s span {span.span_id}")
    return missing


def _is_root(span: SpanShape) -> bool:
    entry = span.service == registry.ENTRY.name and span.kind == SERVER
    return not span.parent_span_id or entry


def _is_redis(attributes: Mapping[str, Any]) -> bool:
    return attributes.get("db.system.name") == "redis"
