"""Copy selected W3C baggage entries onto every span a service starts.

The gateway puts ``client.id`` into baggage once; every downstream span then
carries it as an attribute, so a trace search by client works in any service.
Only allow-listed keys are copied: baggage comes from the network and must not
become an unbounded (or secret-carrying) set of span attributes.
"""

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import baggage, context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor


class BaggageSpanProcessor(SpanProcessor):
    def __init__(self, keys: Collection[str]) -> None:
        self._keys = tuple(keys)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        entries = baggage.get_all(parent_context)
        for key in self._keys:
            value = entries.get(key)
            if isinstance(value, str):
                span.set_attribute(key, value)


@contextmanager
def baggage_entries(entries: Mapping[str, str]) -> Iterator[None]:
    """Add baggage for the duration of a block: outgoing calls carry it."""
    ctx = context.get_current()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, context=ctx)
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)
