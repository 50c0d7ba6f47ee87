"""The edge makes its own sampling decision; the services behind it follow it.

A W3C ``traceparent`` carries the caller's sampled flag. Behind the gateway the
caller is one of our services, and following its flag keeps every trace whole
(the SDK's default, ``parentbased_always_on``). At the gateway the caller is
anyone: trusting the flag would let a client send ``...-00`` and leave no trace
and no span metrics of its requests (or ``-01``, to force sampling where a ratio
is configured). So at the edge a remote parent's flag is ignored: the configured
sampler decides as if the span had no parent, on the trace id the client sent
(the trace goes on; only the decision is ours). Local parents still decide for
their children, so a trace is sampled or not as a whole.
"""

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class EdgeSampler(Sampler):
    """``configured`` (from ``OTEL_TRACES_SAMPLER``), blind to remote parents' flags."""

    def __init__(self, configured: Sampler) -> None:
        self._configured = configured

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not (parent.is_valid and parent.is_remote):
            return self._configured.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        # No parent to follow (an empty context, not None: None means the current
        # one, which holds the remote parent); the client's tracestate stays.
        result = self._configured.should_sample(
            Context(), trace_id, name, kind, attributes, links, trace_state
        )
        return SamplingResult(result.decision, result.attributes, parent.trace_state)

    def get_description(self) -> str:
        return f"EdgeSampler{{{self._configured.get_description()}}}"
