"""Spans as trace stores return them in OTLP JSON (Jaeger's /api/v3, Tempo's
/api/v2), flattened: for ``make trace`` and the end-to-end tests."""

from dataclasses import dataclass
from typing import Any

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
        return self.attributes.get("db.system.name") == "redis"


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
