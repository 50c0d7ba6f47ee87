"""Every request's trace, fetched from Jaeger by the id the gateway returned."""

import uuid

import httpx
import pytest

from services import registry
from services.gateway.settings import DEMO_API_KEY
from stack.backends import Backends
from stack.native import NativeStack
from stack.processes import wait_until
from tests.e2e.conftest import Traffic
from traces.otlp_json import CLIENT, SERVER, StoredSpan, flatten, missing_parts

SERVICES = registry.names()
# caller -> callee: each callee span under a caller's client span (services/registry.py).
EDGES = registry.edges()


def _complete(backends: Backends, trace_id: str) -> list[StoredSpan]:
    """The trace once every call in it arrived (traces.otlp_json.missing_parts);
    spans of one trace arrive in pieces."""

    def probe() -> list[StoredSpan] | None:
        spans = flatten(backends.trace(trace_id))
        return spans if not missing_parts(spans) else None

    return wait_until(probe, timeout=60, what=f"trace {trace_id} complete in Jaeger")


@pytest.fixture(scope="module")
def traces(backends: Backends, traffic: Traffic) -> dict[str, list[StoredSpan]]:
    return {trace_id: _complete(backends, trace_id) for trace_id in traffic.trace_ids}


@pytest.mark.parametrize(("caller", "callee"), EDGES)
def test_each_hop_is_parented_by_its_callers_client_span(
    traces: dict[str, list[StoredSpan]], caller: str, callee: str
) -> None:
    for trace_id, spans in traces.items():
        by_id = {span.span_id: span for span in spans}
        if callee in registry.REDISES:
            # Redis has no spans of its own: its callers' client spans stand for it,
            # under the caller's server span.
            children = [s for s in spans if s.is_redis and s.service == caller]
            expected_parent_kind = SERVER
        else:
            children = [s for s in spans if s.service == callee and s.kind == SERVER]
            expected_parent_kind = CLIENT
        assert children, f"{trace_id}: no {callee} spans"
        for child in children:
            parent = by_id[child.parent_span_id]
            assert (parent.service, parent.kind) == (caller, expected_parent_kind), trace_id


def test_the_gateway_server_span_is_the_root(traces: dict[str, list[StoredSpan]]) -> None:
    for trace_id, spans in traces.items():
        assert {span.service for span in spans} == set(SERVICES)
        roots = [s for s in spans if not s.parent_span_id]
        assert [(r.service, r.name, r.kind) for r in roots] == [("gateway", "POST /chat", SERVER)]
        assert all(span.status_code != 2 for span in spans), f"{trace_id} has an error span"


@pytest.mark.parametrize("service", SERVICES)
def test_resource_attributes_identify_the_service(
    traces: dict[str, list[StoredSpan]], service: str
) -> None:
    for spans in traces.values():
        for span in (s for s in spans if s.service == service):
            assert span.resource["service.namespace"] == "otel-chat-demo"
            assert span.resource["service.version"]
            assert span.resource["service.instance.id"]
            assert span.resource["deployment.environment.name"] == "native"


def test_baggage_becomes_an_attribute_downstream(traces: dict[str, list[StoredSpan]]) -> None:
    for spans in traces.values():
        downstream = [s for s in spans if s.service != registry.ENTRY.name]
        assert {s.attributes.get("client.id") for s in downstream} == {"demo-client"}


def test_cache_hits_and_misses_are_visible(
    traces: dict[str, list[StoredSpan]], traffic: Traffic
) -> None:
    for response in traffic.responses:
        spans = traces[response["trace_id"]]
        lookup = next(s for s in spans if s.name == "chat.cache_lookup")
        assert lookup.attributes["cache.hit"] is response["cached"]
        generated = any(s.name == "chat.generate_reply" for s in spans)
        assert generated is not response["cached"]


def test_a_request_the_client_marked_unsampled_is_in_the_trace_store(
    backends: Backends, stack: NativeStack
) -> None:
    """The gateway keeps the browser's trace id but not its sampling decision
    (services/telemetry/_sampling.py): a `-00` traceparent still leaves a trace."""
    trace_id = uuid.uuid4().hex
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.entry}/chat",
        json={"message": f"hello {uuid.uuid4().hex[:6]}"},
        headers={"X-API-Key": DEMO_API_KEY, "traceparent": f"00-{trace_id}-b7ad6b7169203331-00"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["trace_id"] == trace_id
    spans = _complete(backends, trace_id)
    assert {span.service for span in spans} >= set(SERVICES)
