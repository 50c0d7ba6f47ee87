"""What the chat page may say in its spans, and how the relay holds it to that.

A browser is an outsider: whatever it sends, the relay forwards only a message it
built itself from what it validated, never the client's bytes::

    body ──strict OTLP/JSON──▶ ExportTraceServiceRequest ──policy──▶ a new request
         (400 if not OTLP)          (the client's, parsed)   (400 if     (protobuf to
                                                              not the     the Collector)
                                                              page's)

Parsing (:func:`parse_export`): OTLP/JSON as the spec writes it, and nothing else:
lowerCamelCase keys only (the proto names, ``resource_spans``, ``string_value``, are
not valid OTLP/JSON and are refused, so no second spelling can hide beside the first),
no duplicate keys, no unknown fields, one member per ``oneof``, trace and span ids in
hex of the right length.

The policy (:func:`page_spans`), drawn from what the page's instrumentation really
makes (web/src/telemetry.js, chat.js):

- the resource is the relay's, whatever the page sent: ``service.name=chat-web``,
  ``service.namespace``, the ``client.id`` that authentication found, and only the
  ``telemetry.sdk.*`` keys of the page's own resource (short tokens);
- at most ``MAX_SPANS`` spans per export (the page sends batches of 64), of them
  ``MAX_CLIENT_SPANS`` fetch spans, and ``MAX_ATTRIBUTES`` attributes, ``MAX_EVENTS``
  events per span, or the export is refused; links, trace state and unknown events
  are dropped (the page makes none). A fetch span waits in the service graph's store
  for its server span, so its cap bounds how much of that store one client can hold;
- kinds INTERNAL (document load, clicks, ``chat.send``) and CLIENT (fetch) only: a
  browser is never a server, so it can start no service-graph edge of its own;
- span names are the page's few (:data:`INTERNAL_NAMES`, :data:`CLIENT_NAMES`); any
  other name becomes ``_OTHER``. Span names are a span-metrics dimension: this keeps
  the page's series to a handful whatever it sends;
- attributes on :data:`ATTRIBUTES` only, each of its type, strings cut to
  ``MAX_VALUE_CHARS``. Not on the list, on purpose: ``http.route`` (a span-metrics
  dimension the page never sets), ``peer.service``, ``server.address``, ``db.*``
  (they name service-graph nodes; the page only calls its own origin, which
  ``url.full`` still shows). ``http.request.method`` must be the fetch span's name
  and ``http.response.status_code`` a status code (100-599);
- URLs keep scheme, host, port and path, with a session id in the path written
  ``{session_id}``; query, fragment and credentials are dropped. A session id is a
  bearer credential (``GET /chat/{session_id}/history``) and never goes to telemetry.

The Collector bounds the series that spans make whatever their source
(otel-collector/config.yaml, the span_metrics and servicegraph connectors); this
policy keeps the page's spans far below that bound.
"""

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.protobuf import json_format  # type: ignore[import-untyped]  # no stubs installed
from google.protobuf.descriptor import Descriptor, FieldDescriptor  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from services.telemetry import SERVICE_NAMESPACE

BROWSER_SERVICE = "chat-web"
OTHER = "_OTHER"  # a name outside the page's list, as semconv writes an unknown HTTP method

MAX_SPANS = 128
MAX_CLIENT_SPANS = 16  # a batch covers a second: a chat's POST, a history GET
MAX_ATTRIBUTES = 32
MAX_EVENTS = 32
MAX_VALUE_CHARS = 1024

# Span names per kind: document-load's three, user-interaction's click, the page's own
# chat.send; fetch names a CLIENT span by its method, and the page only GETs and POSTs.
INTERNAL_NAMES = frozenset({"documentLoad", "documentFetch", "resourceFetch", "click", "chat.send"})
CLIENT_NAMES = frozenset({"GET", "POST"})
_KINDS = {Span.SPAN_KIND_INTERNAL: INTERNAL_NAMES, Span.SPAN_KIND_CLIENT: CLIENT_NAMES}

# The events the page records: resource-timing marks (sdk-trace-web's
# PerformanceTimingNames), document-load's paint marks, and recorded exceptions.
EVENT_NAMES = frozenset(
    {
        "fetchStart", "domainLookupStart", "domainLookupEnd", "connectStart",
        "secureConnectionStart", "connectEnd", "requestStart", "responseStart",
        "responseEnd", "redirectStart", "redirectEnd", "unloadEventStart", "unloadEventEnd",
        "domInteractive", "domContentLoadedEventStart", "domContentLoadedEventEnd",
        "domComplete", "loadEventStart", "loadEventEnd", "firstPaint",
        "firstContentfulPaint", "exception",
    }
)  # fmt: skip
_EVENT_ATTRIBUTES = frozenset({"exception.type", "exception.message", "exception.stacktrace"})

# The resource keys the page may name itself (its SDK's); everything else is the relay's.
_RESOURCE_KEYS = frozenset(
    {"telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version"}
)
_TOKEN = re.compile(r"[A-Za-z0-9._+-]{1,32}")
_SCOPE_NAME = re.compile(r"[@A-Za-z0-9._/-]{1,128}")
_SESSION_SEGMENT = re.compile(r"[0-9a-fA-F]{32}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_ID_BYTES = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}


class BadExportError(ValueError):
    """The body is not an OTLP/JSON trace export the page could have sent."""


# --- parsing ---------------------------------------------------------------------------


def parse_export(body: bytes) -> ExportTraceServiceRequest:
    """The body as the protobuf message, parsed strictly (see the module docstring)."""
    try:
        document = json.loads(body, object_pairs_hook=_no_duplicate_keys)
        request = ExportTraceServiceRequest()
        json_format.ParseDict(_as_proto3_json(document, request.DESCRIPTOR, "$"), request)
    # RecursionError: JSON nested deeper than the parser goes.
    except (ValueError, RecursionError, json_format.ParseError) as exc:
        raise BadExportError(str(exc).splitlines()[0]) from exc
    return request


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise BadExportError("duplicate keys in a JSON object")
    return document


def _as_proto3_json(value: Any, message: Descriptor, path: str) -> dict[str, Any]:
    """Check every key against OTLP/JSON's field names and turn its hex ids into what
    protobuf's JSON mapping expects (base64), recursively; json_format does the rest
    (enums as numbers or names, 64-bit integers as strings, oneofs)."""
    if not isinstance(value, dict):
        raise BadExportError(f"{path} must be an object")
    converted: dict[str, Any] = {}
    for key, item in value.items():
        field = message.fields_by_camelcase_name.get(key)
        if field is None or field.json_name != key:
            raise BadExportError(f"{path}.{key[:64]}: no such field in OTLP/JSON")
        where = f"{path}.{key}"
        if field.type == FieldDescriptor.TYPE_MESSAGE and item is not None:
            if field.is_repeated:
                if not isinstance(item, list):
                    raise BadExportError(f"{where} must be an array")
                item = [
                    _as_proto3_json(one, field.message_type, f"{where}[{i}]")
                    for i, one in enumerate(item)
                ]
            else:
                item = _as_proto3_json(item, field.message_type, where)
        elif field.name in _ID_BYTES and field.type == FieldDescriptor.TYPE_BYTES:
            item = _hex_id(item, field.name, where)
        converted[key] = item
    return converted


def _hex_id(value: Any, name: str, where: str) -> str:
    """A hex id as base64; empty stays empty (a root span's parent)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise BadExportError(f"{where} must be hex")
    raw = bytes.fromhex(value)
    if raw and (len(raw) != _ID_BYTES[name] or not any(raw)):
        raise BadExportError(f"{where} must be {_ID_BYTES[name]} bytes, not all zero")
    return base64.b64encode(raw).decode()


# --- the policy -----------------------------------------------------------------------


def page_spans(export: ExportTraceServiceRequest, client_id: str) -> ExportTraceServiceRequest:
    """A new export holding the page's spans as the policy allows them, under the
    relay's resource. Raises :class:`BadExportError` for what the page never sends."""
    spans = [
        (scope_spans, span)
        for resource_spans in export.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    if len(spans) > MAX_SPANS:
        raise BadExportError(f"at most {MAX_SPANS} spans per export, not {len(spans)}")
    fetches = sum(span.kind == Span.SPAN_KIND_CLIENT for _, span in spans)
    if fetches > MAX_CLIENT_SPANS:
        raise BadExportError(f"at most {MAX_CLIENT_SPANS} CLIENT spans per export, not {fetches}")
    relayed = ExportTraceServiceRequest()
    resource_spans = relayed.resource_spans.add()
    _set_resource(resource_spans, export, client_id)
    scopes: dict[tuple[str, str], ScopeSpans] = {}
    for scope_spans, span in spans:
        scope = (_scope_name(scope_spans.scope.name), _token(scope_spans.scope.version))
        if scope not in scopes:
            scopes[scope] = resource_spans.scope_spans.add()
            scopes[scope].scope.name, scopes[scope].scope.version = scope
        _copy_span(span, scopes[scope].spans.add())
    return relayed


def span_count(export: ExportTraceServiceRequest) -> int:
    return sum(len(s.spans) for rs in export.resource_spans for s in rs.scope_spans)


def _set_resource(target: ResourceSpans, export: ExportTraceServiceRequest, client_id: str) -> None:
    """The relay's resource, with the SDK keys of the page's first resource."""
    given = export.resource_spans[0].resource.attributes if export.resource_spans else []
    sdk = {}
    for pair in reversed(given):  # the first of a repeated key, as the Collector reads it
        if pair.key in _RESOURCE_KEYS and _TOKEN.fullmatch(pair.value.string_value):
            sdk[pair.key] = pair.value.string_value
    for key, text in sorted(sdk.items()):
        _put(target.resource.attributes, key, string_value=text)
    _put(target.resource.attributes, "service.name", string_value=BROWSER_SERVICE)
    _put(target.resource.attributes, "service.namespace", string_value=SERVICE_NAMESPACE)
    _put(target.resource.attributes, "client.id", string_value=client_id)


def _copy_span(span: Span, target: Span) -> None:
    names = _KINDS.get(span.kind)
    if names is None:
        raise BadExportError(f"span kind {span.kind}: the page makes INTERNAL and CLIENT spans")
    if len(span.attributes) > MAX_ATTRIBUTES or len(span.events) > MAX_EVENTS:
        raise BadExportError(f"at most {MAX_ATTRIBUTES} attributes, {MAX_EVENTS} events per span")
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise BadExportError("every span needs a trace id and a span id")
    if span.status.code not in Status.StatusCode.values():
        raise BadExportError(f"status code {span.status.code} is not an OTLP status")
    target.trace_id = span.trace_id
    target.span_id = span.span_id
    target.parent_span_id = span.parent_span_id
    target.flags = span.flags & 0x3FF  # W3C trace flags and OTLP's two is-remote bits
    target.kind = span.kind
    target.name = span.name if span.name in names else OTHER
    target.start_time_unix_nano = span.start_time_unix_nano
    target.end_time_unix_nano = span.end_time_unix_nano
    kept = _attributes(span.attributes, target.attributes, _allowed_on(target))
    target.dropped_attributes_count = span.dropped_attributes_count + len(span.attributes) - kept
    for event in span.events:
        if event.name in EVENT_NAMES:
            copy = target.events.add(name=event.name, time_unix_nano=event.time_unix_nano)
            _attributes(event.attributes, copy.attributes, _EVENT_VALUES)
    target.dropped_events_count = span.dropped_events_count + len(span.events) - len(target.events)
    target.dropped_links_count = span.dropped_links_count + len(span.links)
    target.status.code = span.status.code
    target.status.message = span.status.message[:MAX_VALUE_CHARS]


# --- attributes -----------------------------------------------------------------------

# A checker takes the client's value and returns the value to keep, or None to drop it.
_Check = Callable[[AnyValue], AnyValue | None]


def _string(value: AnyValue) -> AnyValue | None:
    if value.WhichOneof("value") != "string_value":
        return None
    return AnyValue(string_value=value.string_value[:MAX_VALUE_CHARS])


def _integer(value: AnyValue) -> AnyValue | None:
    return value if value.WhichOneof("value") == "int_value" else None


def _boolean(value: AnyValue) -> AnyValue | None:
    return value if value.WhichOneof("value") == "bool_value" else None


def _status_code(value: AnyValue) -> AnyValue | None:
    is_code = value.WhichOneof("value") == "int_value" and 100 <= value.int_value <= 599
    return value if is_code else None


def _url(value: AnyValue) -> AnyValue | None:
    """Scheme, host, port and path, session ids templated; nothing else."""
    if value.WhichOneof("value") != "string_value":
        return None
    try:
        parts = urlsplit(value.string_value[:MAX_VALUE_CHARS])
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:  # a port out of range, a broken IPv6 host
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    path = "/".join(
        "{session_id}" if _SESSION_SEGMENT.fullmatch(segment) else segment
        for segment in parts.path.split("/")
    )
    return AnyValue(string_value=urlunsplit((parts.scheme, netloc, path, "", "")))


# Every attribute key the page's spans carry, and what its value must be.
ATTRIBUTES: dict[str, _Check] = {
    # fetch (CLIENT); http.request.method is checked against the span's name
    "http.request.method_original": _string,
    "http.response.status_code": _status_code,
    "http.request.body.size": _integer,
    "error.type": _string,
    # resource timing (fetch and document-load)
    "http.response_content_length": _integer,
    "http.response_content_length_uncompressed": _integer,
    # document-load, user-interaction, fetch
    "url.full": _url,
    "user_agent.original": _string,
    "event_type": _string,
    "target_element": _string,
    "target_xpath": _string,
    # chat.send (web/src/chat.js)
    "chat.message.length": _integer,
    "chat.session.new": _boolean,
    "chat.reply.cached": _boolean,
    "chat.reply.degraded": _boolean,
    "chat.history_saved": _boolean,
}
_EVENT_VALUES: dict[str, _Check] = dict.fromkeys(_EVENT_ATTRIBUTES, _string)


def _allowed_on(span: Span) -> dict[str, _Check]:
    """ATTRIBUTES, plus http.request.method on a fetch span, where it must be the name."""
    if span.kind != Span.SPAN_KIND_CLIENT or span.name == OTHER:
        return ATTRIBUTES
    name = span.name

    def method(value: AnyValue) -> AnyValue | None:
        return value if value.string_value == name else None

    return {**ATTRIBUTES, "http.request.method": method}


def _attributes(given: Iterable[KeyValue], target: Any, allowed: dict[str, _Check]) -> int:
    """Copy the allowed attributes into ``target``; returns how many were kept. A key
    given twice is refused: OTLP requires unique keys, and receivers differ in which
    of the two they keep."""
    seen: set[str] = set()
    for pair in given:
        if pair.key in seen:
            raise BadExportError(f"attribute {pair.key[:64]!r} given twice")
        seen.add(pair.key)
        check = allowed.get(pair.key)
        value = check(pair.value) if check else None
        if value is not None:
            target.add(key=pair.key, value=value)
    return len(target)


def _put(attributes: Any, key: str, **value: Any) -> None:
    attributes.add(key=key, value=AnyValue(**value))


def _token(text: str) -> str:
    return text if _TOKEN.fullmatch(text) else ""


def _scope_name(text: str) -> str:
    """An instrumentation's name (``@opentelemetry/instrumentation-fetch``, ``chat-web``)."""
    return text if _SCOPE_NAME.fullmatch(text) else ""
