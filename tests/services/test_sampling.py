"""The edge makes its own sampling decision (services/telemetry/_sampling.py)."""

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from services.telemetry._sampling import EdgeSampler

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


def _parent(*, sampled: bool, remote: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    state = TraceState([("vendor", "value")])
    span_context = SpanContext(TRACE_ID, 0xB7AD6B7169203331, remote, flags, state)
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def _decision(sampler: Sampler, parent: Context) -> Decision:
    return sampler.should_sample(parent, TRACE_ID, "POST /chat").decision


@pytest.mark.parametrize("sampled", [True, False])
def test_a_remote_parents_flag_does_not_decide(sampled: bool) -> None:
    recorded = EdgeSampler(ParentBased(ALWAYS_ON))
    dropped = EdgeSampler(ParentBased(ALWAYS_OFF))
    parent = _parent(sampled=sampled, remote=True)
    assert _decision(recorded, parent) is Decision.RECORD_AND_SAMPLE
    assert _decision(dropped, parent) is Decision.DROP


@pytest.mark.parametrize("sampled", [True, False])
def test_a_local_parent_still_decides_for_its_children(sampled: bool) -> None:
    sampler = EdgeSampler(ParentBased(ALWAYS_ON))
    expected = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
    assert _decision(sampler, _parent(sampled=sampled, remote=False)) is expected


def test_the_clients_tracestate_goes_on() -> None:
    result = EdgeSampler(ParentBased(ALWAYS_ON)).should_sample(
        _parent(sampled=False, remote=True), TRACE_ID, "POST /chat"
    )
    assert result.trace_state is not None
    assert result.trace_state.get("vendor") == "value"
