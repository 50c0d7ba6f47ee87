"""Real OTLP receivers for tests: what the services export, decoded.

Both listen on loopback and keep every request so tests can ask what arrived:
:func:`otlp_receiver` speaks OTLP/HTTP (``/v1/traces``, ``/v1/metrics``,
``/v1/logs`` as protobuf, what the Python exporters send; traces as JSON too,
what the browser's exporter sends through the gateway), and
:func:`otlp_grpc_receiver` OTLP/gRPC (the three collector services' ``Export``).
"""

import base64
import gzip
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format  # type: ignore[import-untyped]  # no stubs installed
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def attributes(pairs: Iterable[KeyValue]) -> dict[str, object]:
    """OTLP key/values as a plain dict."""
    result: dict[str, object] = {}
    for pair in pairs:
        result[pair.key] = _value(pair.value)
    return result


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def traces_from_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/HTTP JSON as the protobuf message. OTLP's JSON writes trace and span ids
    in hex where protobuf's JSON mapping expects base64: converted first."""
    export = json.loads(body)
    for resource_spans in export.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    request = ExportTraceServiceRequest()
    json_format.ParseDict(export, request)
    return request


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    resource: dict[str, object]
    span: Span

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, object]:
        return attributes(self.span.attributes)

    @property
    def kind(self) -> int:
        return self.span.kind

    @property
    def status_code(self) -> int:
        return self.span.status.code


@dataclass(frozen=True)
class ReceivedLog:
    service: str
    record: LogRecord

    @property
    def trace_id(self) -> str:
        return self.record.trace_id.hex()


@dataclass
class OtlpReceiver:
    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    # service -> metric names seen
    metrics: dict[str, set[str]] = field(default_factory=dict)
    raw_metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def receive(self, path: str, body: bytes, content_type: str = "") -> None:
        """One OTLP/HTTP request body, by its path."""
        if path == "/v1/traces" and content_type == "application/json":
            self.add_traces(traces_from_json(body))
        elif path == "/v1/traces":
            self.add_traces(ExportTraceServiceRequest.FromString(body))
        elif path == "/v1/logs":
            self.add_logs(ExportLogsServiceRequest.FromString(body))
        elif path == "/v1/metrics":
            self.add_metrics(ExportMetricsServiceRequest.FromString(body))
        else:
            raise ValueError(path)

    def add_traces(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(
                        ReceivedSpan(str(resource["service.name"]), resource, span)
                        for span in scope_spans.spans
                    )

    def add_logs(self, request: ExportLogsServiceRequest) -> None:
        with self._lock:
            for resource_logs in request.resource_logs:
                service = str(attributes(resource_logs.resource.attributes)["service.name"])
                for scope_logs in resource_logs.scope_logs:
                    self.logs.extend(
                        ReceivedLog(service, record) for record in scope_logs.log_records
                    )

    def add_metrics(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.raw_metrics.append(request)
            for resource_metrics in request.resource_metrics:
                resource = attributes(resource_metrics.resource.attributes)
                names = self.metrics.setdefault(str(resource["service.name"]), set())
                for scope_metrics in resource_metrics.scope_metrics:
                    names.update(metric.name for metric in scope_metrics.metrics)

    def spans_of(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def logs_of(self, trace_id: str) -> list[ReceivedLog]:
        with self._lock:
            return [log for log in self.logs if log.trace_id == trace_id]

    def metric_exports(self, service: str) -> int:
        """How many metric exports carried ``service``'s data so far."""
        with self._lock:
            return sum(
                any(
                    attributes(rm.resource.attributes)["service.name"] == service
                    for rm in request.resource_metrics
                )
                for request in self.raw_metrics
            )

    def counter(self, service: str, name: str, **labels: object) -> float:
        """A counter's total across ``service``'s processes, for data points whose
        attributes include ``labels`` (the newest cumulative value of each)."""
        newest: dict[tuple[object, str], float] = {}
        with self._lock:
            for request in self.raw_metrics:
                for resource_metrics in request.resource_metrics:
                    resource = attributes(resource_metrics.resource.attributes)
                    if resource["service.name"] != service:
                        continue
                    for scope_metrics in resource_metrics.scope_metrics:
                        for metric in scope_metrics.metrics:
                            if metric.name != name:
                                continue
                            for point in metric.sum.data_points:
                                point_attributes = attributes(point.attributes)
                                if labels.items() <= point_attributes.items():
                                    key = (resource["service.instance.id"], str(point_attributes))
                                    newest[key] = point.as_int or point.as_double
        return sum(newest.values())

    def everything(self) -> str:
        """Every span, log record and metric received, as text: a haystack for
        values that must never be recorded."""
        with self._lock:
            parts = [f"{span.resource} {span.span}" for span in self.spans]
            parts += [f"{log.service} {log.record}" for log in self.logs]
            parts += [str(request) for request in self.raw_metrics]
        return "\n".join(parts)


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                receiver.receive(self.path, body, self.headers.get("Content-Type", ""))
            except ValueError:
                self.send_response(404)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: one line per export would drown the test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def otlp_grpc_receiver() -> Iterator[OtlpReceiver]:
    """The same receiver over OTLP/gRPC, without TLS (an ``http://`` endpoint)."""
    receiver = OtlpReceiver()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    package = "opentelemetry.proto.collector"
    _add_export_service(
        server,
        f"{package}.trace.v1.TraceService",
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
        receiver.add_traces,
    )
    _add_export_service(
        server,
        f"{package}.metrics.v1.MetricsService",
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
        receiver.add_metrics,
    )
    _add_export_service(
        server,
        f"{package}.logs.v1.LogsService",
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
        receiver.add_logs,
    )
    receiver.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver
    finally:
        server.stop(grace=None)


def _add_export_service(
    server: grpc.Server,
    service: str,
    request_type: Any,  # protobuf message classes: untyped (no protobuf stubs)
    response_type: Any,
    add: Callable[[Any], None],
) -> None:
    """Serve ``service``'s one method, ``Export``: keep the request, answer success."""

    def export(request: Any, context: grpc.ServicerContext) -> Any:
        add(request)
        return response_type()

    handler = grpc.unary_unary_rpc_method_handler(
        export,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
    )
