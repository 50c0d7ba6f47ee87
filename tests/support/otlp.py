"""A real OTLP/HTTP receiver for tests: what the services export, decoded.

It listens on loopback, accepts ``/v1/traces``, ``/v1/metrics`` and
``/v1/logs`` as protobuf (what the Python exporters send), and keeps every
request so tests can ask what arrived.
"""

import gzip
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
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

    def receive(self, path: str, body: bytes) -> None:
        with self._lock:
            if path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                for resource_spans in traces.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        self.spans.extend(
                            ReceivedSpan(str(resource["service.name"]), resource, span)
                            for span in scope_spans.spans
                        )
            elif path == "/v1/logs":
                logs = ExportLogsServiceRequest.FromString(body)
                for resource_logs in logs.resource_logs:
                    service = str(attributes(resource_logs.resource.attributes)["service.name"])
                    for scope_logs in resource_logs.scope_logs:
                        self.logs.extend(
                            ReceivedLog(service, record) for record in scope_logs.log_records
                        )
            elif path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                self.raw_metrics.append(request)
                for resource_metrics in request.resource_metrics:
                    resource = attributes(resource_metrics.resource.attributes)
                    names = self.metrics.setdefault(str(resource["service.name"]), set())
                    for scope_metrics in resource_metrics.scope_metrics:
                        names.update(metric.name for metric in scope_metrics.metrics)
            else:
                raise ValueError(path)

    def spans_of(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def logs_of(self, trace_id: str) -> list[ReceivedLog]:
        with self._lock:
            return [log for log in self.logs if log.trace_id == trace_id]

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
                receiver.receive(self.path, body)
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
