"""Every span the services ended was exported, reached the Collector and was stored."""

import json

from stack.backends import Backends
from stack.native import NativeStack
from stack.processes import wait_until
from tests.e2e.conftest import Traffic


def test_span_counts_agree_from_sdk_to_collector_to_jaeger(
    backends: Backends, traffic: Traffic, stack: NativeStack, injected_spans: list[int]
) -> None:
    last: dict[str, float] = {}
    # The Collector also counts spans a test sent it directly (never via an SDK, nor
    # under the gateway's traces that "stored in Jaeger" counts).
    collector_stages = ("accepted by the Collector", "sent to Jaeger")

    def agree() -> dict[str, float] | None:
        nonlocal last
        last = backends.span_counts()
        for stage in collector_stages:
            last[stage] -= sum(injected_spans)
        values = set(last.values())
        return last if len(values) == 1 and values != {0.0} else None

    try:
        wait_until(agree, timeout=90, what="span counts to agree", interval=1)
    except TimeoutError as exc:
        raise AssertionError(f"span counts differ: {json.dumps(last)}") from exc
    # At least the spans of the test's own requests (11+ per miss, 9+ per hit).
    assert last["stored in Jaeger"] >= 9 * len(traffic.trace_ids)
    # And nothing was dropped before export (a full queue counts here).
    assert backends.promql('otel_sdk_processor_span_processed_total{error_type!=""}') == []
