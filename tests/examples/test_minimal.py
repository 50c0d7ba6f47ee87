"""examples/minimal does what its README says: one real uvicorn process, exporting to a
test OTLP receiver, asked for one greeting (after one it must refuse).

Every span is found by what it is (its route or name), never by its trace id: a broken
link then shows as the wrong trace or parent, not as a span that never came.
"""

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from stack.processes import free_port, http_ok, wait_until
from tests.integration.conftest import FAST_EXPORT
from tests.support.otlp import OtlpReceiver, ReceivedLog, ReceivedSpan, attributes, otlp_receiver
from tests.support.processes import running

SERVICE = "minimal-under-test"  # set as OTEL_SERVICE_NAME, over the code's "minimal"
PATIENCE = 10  # seconds for an export to arrive


@dataclass(frozen=True)
class Greeted:
    """What the receiver got for one GET /greet?language=fr, and its answer's trace id."""

    receiver: OtlpReceiver
    trace_id: str

    def span(self, **wanted: object) -> ReceivedSpan:
        """The span whose attributes (and ``name``) include ``wanted``."""

        def found() -> ReceivedSpan | None:
            for span in self.receiver.spans:
                if wanted.items() <= {**span.attributes, "name": span.span.name}.items():
                    return span
            return None

        return wait_until(found, timeout=PATIENCE, what=f"a span with {wanted}")

    @property
    def server(self) -> ReceivedSpan:
        return self.span(**{"http.route": "/greet", "http.response.status_code": 200})

    @property
    def business(self) -> ReceivedSpan:
        return self.span(name="compose greeting")

    @property
    def client(self) -> ReceivedSpan:
        return wait_until(
            lambda: next((s for s in self.receiver.spans if s.kind == Span.SPAN_KIND_CLIENT), None),
            timeout=PATIENCE,
            what="a client span",
        )

    @property
    def downstream(self) -> ReceivedSpan:
        return self.span(**{"http.route": "/salutation"})


@pytest.fixture(scope="module")
def greeted(log_dir: Path) -> Iterator[Greeted]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "examples.minimal.app:app", "--port", str(port)]
    with otlp_receiver() as receiver:
        env = {
            **FAST_EXPORT,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": SERVICE,
            "MINIMAL_DOWNSTREAM_URL": url,  # the app itself, over real HTTP
        }
        # Ready when a route of FastAPI's own answers: no /salutation call but the one.
        ready = http_ok(f"{url}/openapi.json")
        with running("minimal", command, ready=ready, log_dir=log_dir, env=env):
            # Not a language it knows: refused, and no metric attribute of its own.
            refused = httpx.get(f"{url}/greet", params={"language": "xx"})
            assert refused.status_code == 422
            answer = httpx.get(f"{url}/greet", params={"language": "fr"}).json()
            assert answer["greeting"] == "Bonjour, world!"
            yield Greeted(receiver, answer["trace_id"])


def test_fastapi_makes_the_server_span(greeted: Greeted) -> None:
    server = greeted.server
    assert server.kind == Span.SPAN_KIND_SERVER
    assert server.span.name == "GET /greet"
    assert server.parent_span_id == ""  # the trace's root
    assert server.trace_id == greeted.trace_id  # the one the answer names
    assert server.attributes["http.response.status_code"] == 200
    assert server.service == SERVICE  # OTEL_SERVICE_NAME beat the code's name


def test_the_business_span_is_the_server_spans_child_with_its_attributes(
    greeted: Greeted,
) -> None:
    business, server = greeted.business, greeted.server
    assert (business.trace_id, business.parent_span_id) == (server.trace_id, server.span_id)
    assert business.attributes == {"greeting.language": "fr", "greeting.salutation": "Bonjour"}


def test_httpx_makes_the_client_span_inside_the_business_span(greeted: Greeted) -> None:
    client, business = greeted.client, greeted.business
    assert (client.trace_id, client.parent_span_id) == (business.trace_id, business.span_id)
    # The stable HTTP conventions (OTEL_SEMCONV_STABILITY_OPT_IN=http), as FastAPI's.
    assert client.attributes["http.request.method"] == "GET"
    assert str(client.attributes["url.full"]).endswith("/salutation?language=fr")


def test_the_client_span_propagates_to_the_downstream_server_span(greeted: Greeted) -> None:
    downstream, client = greeted.downstream, greeted.client
    assert downstream.kind == Span.SPAN_KIND_SERVER
    assert (downstream.trace_id, downstream.parent_span_id) == (client.trace_id, client.span_id)


def test_the_counter_has_an_exemplar_with_the_requests_trace(greeted: Greeted) -> None:
    business = greeted.business

    def greetings_points() -> list[NumberDataPoint] | None:
        for export in greeted.receiver.raw_metrics:
            for resource_metrics in export.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name == "example.greetings":
                            return list(metric.sum.data_points)
        return None

    # One data point: the refused language made none.
    (point,) = wait_until(greetings_points, timeout=PATIENCE, what="example.greetings exported")
    assert (point.as_int, attributes(point.attributes)) == (1, {"greeting.language": "fr"})
    assert [(e.trace_id.hex(), e.span_id.hex()) for e in point.exemplars] == [
        (business.trace_id, business.span_id)
    ]


def test_fastapi_and_httpx_export_their_duration_histograms(greeted: Greeted) -> None:
    wanted = {"http.server.request.duration", "http.client.request.duration"}
    wait_until(
        lambda: wanted <= greeted.receiver.metrics.get(SERVICE, set()) or None,
        timeout=PATIENCE,
        what=f"{wanted} exported",
    )


def test_the_log_record_carries_the_business_spans_ids(greeted: Greeted) -> None:
    business = greeted.business

    def greeted_log() -> ReceivedLog | None:
        return next(
            (
                log
                for log in greeted.receiver.logs
                if log.record.body.string_value == "greeted in fr"
            ),
            None,
        )

    log = wait_until(greeted_log, timeout=PATIENCE, what="the log record exported")
    assert (log.trace_id, log.record.span_id.hex()) == (business.trace_id, business.span_id)
    assert (log.service, log.record.severity_text) == (SERVICE, "INFO")
