"""Trace ids as every store matches them: 32 lowercase hex digits.

Tempo's search API returns trace ids without their leading zeros (``0394…`` comes
back as ``394…``, one trace in sixteen), and other tools copy ids in other forms
(upper case, spaces). Trace-by-id endpoints (Tempo, Jaeger) accept any of them, but an
exact match does not: Loki's ``| trace_id="…"``, VictoriaLogs' ``trace_id:"…"``, or
comparing with the id a response carried. Whatever takes a trace id from somewhere
else passes it through :func:`full_trace_id` first.
"""

import string

TRACE_ID_HEX_DIGITS = 32  # 16 bytes (W3C Trace Context)


def full_trace_id(trace_id: str) -> str:
    """``trace_id`` as 32 lowercase hex digits, leading zeros restored.

    Raises ValueError for anything that is not a trace id: empty, not hex, longer
    than 32 digits, or all zeros (the W3C "invalid" id).
    """
    digits = trace_id.strip().lower()
    if not digits or len(digits) > TRACE_ID_HEX_DIGITS or set(digits) - set(string.hexdigits):
        raise ValueError(f"not a trace id (1 to 32 hex digits): {trace_id!r}")
    if int(digits, 16) == 0:
        raise ValueError(f"the all-zero trace id is invalid: {trace_id!r}")
    return digits.zfill(TRACE_ID_HEX_DIGITS)
