"""Session ids never reach telemetry raw: a pseudonym stands in for each one.

A session id (32 hex digits, issued by the chat service) works as a bearer token
within its client: whoever holds it reads and extends that conversation. Spans and
logs are read by far more people (Grafana's anonymous viewers, anyone with the
trace store), so they carry ``sid-<16 hex digits>`` instead: the start of the id's
SHA-256. The same session always gets the same pseudonym, so its spans and log
lines still group; nobody can go back from a pseudonym to the id, and a pseudonym
is no valid session id, so it cannot be replayed.

Why no key (HMAC): a session id is 128 random bits, so no one can find an id that
matches a pseudonym by trying ids, keyed or not; without a key, whoever holds an id
(its user, a support engineer with the user's id) can compute its pseudonym and
find its traces, and no secret has to reach every service.

Where it applies, all in this package:

- ``session.id``, the attribute chat sets: :func:`session_pseudonym`;
- URL attributes of every span (``url.full``, ``url.path``, ``url.query`` and the
  old ``http.url``/``http.target``), rewritten as the span starts: the gateway's
  server span has the id in its path (``/chat/{session_id}/history``), and so do the
  calls below it;
- the text of every log record, on both handlers (stdout and OTLP).

What counts as a session id here is its shape: exactly 32 hex digits, not part of
a longer run of them. Nothing else the services put in a URL or a log message has
that shape (reply cache keys are whole 64-digit digests, see services.chat.assistant;
trace ids travel in their own fields, never in a message).
"""

import hashlib
import logging
import re

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

_SESSION_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_URL_ATTRIBUTES = ("url.full", "url.path", "url.query", "http.url", "http.target")


def session_pseudonym(session_id: str) -> str:
    """What telemetry says instead of ``session_id``: stable, one-way."""
    return "sid-" + hashlib.sha256(session_id.encode()).hexdigest()[:16]


def without_session_ids(text: str) -> str:
    """``text`` with every session id in it replaced by its pseudonym."""
    if len(text) < 32:  # the common case, and too short to hold one
        return text
    return _SESSION_ID.sub(lambda match: session_pseudonym(match.group()), text)


class SessionIdSpanProcessor(SpanProcessor):
    """Rewrite the URL attributes a span starts with (the instrumentations set them
    at start: FastAPI's server spans, httpx's client spans)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = span.attributes or {}
        for key in _URL_ATTRIBUTES:
            value = attributes.get(key)
            if isinstance(value, str) and (scrubbed := without_session_ids(value)) != value:
                span.set_attribute(key, scrubbed)


class SessionIdLogFilter(logging.Filter):
    """Replace session ids in a record's message, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = without_session_ids(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
