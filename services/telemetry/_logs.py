"""Logging: JSON lines on stdout and OTLP log records, both with trace ids.

Only this module touches logging handlers; services use
``logging.getLogger(__name__)``.
"""

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider

from services.telemetry._pseudonyms import SessionIdLogFilter


class JsonFormatter(logging.Formatter):
    """One JSON object per line, carrying the ids that link it to its trace."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service.name": self._service_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line["trace_id"] = trace.format_trace_id(span_context.trace_id)
            line["span_id"] = trace.format_span_id(span_context.span_id)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


# The service whose code is running in this context (set per request and for
# the lifespan). With one service per process it is always that service; in
# the unit tests, three apps share one process and one root logger, and this is
# how each app's handlers keep only their own records.
_current_service: ContextVar[str | None] = ContextVar("current_service", default=None)


@contextmanager
def service_log_context(service_name: str) -> Iterator[None]:
    """Records logged inside the block belong to ``service_name``."""
    token = _current_service.set(service_name)
    try:
        yield
    finally:
        _current_service.reset(token)


class _FromThisService(logging.Filter):
    """Keep records of this service, and records logged outside any service."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current_service.get()
        return current is None or current == self._service_name


class _StdoutHandler(logging.Handler):
    """Lines to whatever ``sys.stdout`` is when a record is written, not when the
    handler was made (a redirected stream, a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # logging must never break the caller
            self.handleError(record)


class _NotFromOpenTelemetry(logging.Filter):
    """Keep the SDK's own messages (e.g. "failed to export") out of OTLP.

    Exporting a record about a failed export would fail too, and loop; those
    messages still reach stdout.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("opentelemetry")


def attach_log_handlers(
    service: str, logger_provider: LoggerProvider | None, level: str, *, service_name: str
) -> list[logging.Handler]:
    """Send the root logger's records of ``service`` (see service_log_context) to
    stdout as JSON lines that name ``service_name`` (its resource's), and, given a
    provider, to OTLP."""
    stdout_handler = _StdoutHandler()
    stdout_handler.setFormatter(JsonFormatter(service_name))
    handlers: list[logging.Handler] = [stdout_handler]
    if logger_provider is not None:
        otlp_handler = LoggingHandler(logger_provider=logger_provider)
        otlp_handler.addFilter(_NotFromOpenTelemetry())
        handlers.append(otlp_handler)
    for handler in handlers:
        handler.addFilter(_FromThisService(service))
        handler.addFilter(SessionIdLogFilter())  # session ids are credentials
    root = logging.getLogger()
    root.setLevel(level.upper())
    # httpx logs every request at INFO; the client spans already tell that story. So
    # does uvicorn's access log (a plain-text line per request, outside the JSON and
    # OTLP handlers) for the server side, at a price the benchmark's profiles show
    # (docs: the benchmark).
    for chatty in ("httpx", "uvicorn.access"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    for handler in handlers:
        root.addHandler(handler)
    return handlers


def detach_log_handlers(handlers: list[logging.Handler]) -> None:
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
