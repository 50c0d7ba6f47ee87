"""Spans as trace stores return them in OTLP JSON, flattened; and whether a trace
has all arrived. For ``make trace`` and the tests.

Jaeger's ``/api/v3/traces/<id>`` answers ``{"result": {"resourceSpans": [...]}}``
in OTLP JSON proper: hex ids, enums as numbers. Tempo's ``/api/v2/traces/<id>``
answers ``{"trace": {"resourceSpans": [...]}}`` marshalled by gogo/jsonpb: ids in
base64, kinds and status codes as enum names (``SPAN_KIND_SERVER``), 64-bit
numbers as strings (Tempo's docs, api_docs/pushing-spans-with-http.md). Both
become the same :class:`StoredSpan`.
"""

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services import registry

INTERNAL, SERVER, CLIENT = 1, 2, 3  # OTLP span kinds
UNSET, OK, ERROR = 0, 1, 2  # OTLP status codes
_KINDS = {"SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3}
_KINDS |= {"SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5, "SPAN_KIND_UNSPECIFIED": 0}
_STATUS = {"STATUS_CODE_UNSET": UNSET, "STATUS_CODE_OK": OK, "STATUS_CODE_ERROR": ERROR}
_HEX_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")


def attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON key/values as a plain dict (intValue arrives as a string)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        (kind, value), *_ = pair["value"].items() or [("", None)]
        values[pair["key"]] = int(value) if kind == "intValue" else value
    return values


def hex_id(value: str) -> str:
    """A trace or span id as lowercase hex, from hex (OTLP JSON) or base64 (Tempo)."""
    if not value or _HEX_ID.fullmatch(value):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except binascii.Error as exc:
        raise ValueError(f"span id {value!r} is neither hex nor base64") from exc


def _enum(value: int | str | None, names: Mapping[str, int]) -> int:
    return names.get(value, 0) if isinstance(value, str) else int(value or 0)


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
    status_message: str = ""
    start_ns: int = 0
    end_ns: int = 0
    event_names: tuple[str, ...] = ()  # e.g. "exception"

    @property
    def is_redis(self) -> bool:
        return _is_redis(self.attributes)


def flatten(resource_spans: list[dict[str, Any]]) -> list[StoredSpan]:
    """All spans of OTLP JSON ``resourceSpans`` (Tempo before 2.x: ``batches``)."""
    spans = []
    for block in resource_spans:
        resource = attributes(block.get("resource", {}).get("attributes", []))
        for scope in block.get("scopeSpans", []):
            for span in scope.get("spans", []):
                status = span.get("status", {})
                spans.append(
                    StoredSpan(
                        service=resource.get("service.name", "?"),
                        resource=resource,
                        name=span["name"],
                        kind=_enum(span.get("kind"), _KINDS),
                        span_id=hex_id(span["spanId"]),
                        parent_span_id=hex_id(span.get("parentSpanId", "")),
                        attributes=attributes(span.get("attributes", [])),
                        status_code=_enum(status.get("code"), _STATUS),
                        status_message=status.get("message", ""),
                        start_ns=int(span.get("startTimeUnixNano", 0)),
                        end_ns=int(span.get("endTimeUnixNano", 0)),
                        event_names=tuple(e["name"] for e in span.get("events", [])),
                    )
                )
    return spans


def trace_spans(body: dict[str, Any]) -> list[StoredSpan]:
    """The spans of a trace-by-id answer: Jaeger v3 (``result``), Tempo v2 (``trace``)
    or a bare OTLP ``TracesData``."""
    trace = body.get("result") or body.get("trace") or body
    return flatten(trace.get("resourceSpans") or trace.get("batches") or [])


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
    @property
    def status_code(self) -> int: ...


def missing_parts(spans: Iterable[SpanShape]) -> list[str]:
    """What a trace still lacks (empty when it is complete).

    Spans of one trace arrive in pieces, from each service's exporter on its own
    schedule. The trace is complete when it has its root (no parent, or the entry
    service's server span under a caller's traceparent) and every other span's
    parent; when every HTTP call that got an answer has the callee's server span;
    and when every successful server span of the service that stores in Redis has
    Redis spans under it (each of its routes uses Redis; one that failed, say by an
    injected fault, may have stopped before). A trace of a failed request is
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
        served = span.kind == SERVER and span.status_code != ERROR
        if served and span.service in redis_callers and span.span_id not in redis_parents:
            missing.append(f"the Redis spans under {span.service}'s span {span.span_id}")
    return missing


def _is_root(span: SpanShape) -> bool:
    entry = span.service == registry.ENTRY.name and span.kind == SERVER
    return not span.parent_span_id or entry


def _is_redis(attributes: Mapping[str, Any]) -> bool:
    return attributes.get("db.system.name") == "redis"
