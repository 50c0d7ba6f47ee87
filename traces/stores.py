"""Where ``make trace`` reads a trace and its log lines, and the links it prints.

The Docker stack: Tempo (``/api/v2/traces/<id>``) and Loki (LogQL over
``/loki/api/v1/query_range``), both behind Grafana. The native stack: Jaeger
(``/api/v3/traces/<id>``) and VictoriaLogs (LogsQL over ``/select/logsql/query``),
with their own UIs. Either answers with :class:`StoredSpan` and :class:`LogLine`.
"""

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stack.native import LOOPBACK, Ports
from traces.otlp_json import StoredSpan, hex_id, trace_spans

# Log lines are searched from this long before the trace's start to after its end.
LOG_MARGIN_NS = 60 * 1_000_000_000


class StackDownError(Exception):
    """A store or the gateway does not answer: the stack is not (fully) up."""


@dataclass(frozen=True)
class LogLine:
    """One log record of a trace, from either log store."""

    time_ns: int
    service: str
    severity: str
    body: str
    span_id: str  # "" when the record was written outside any span


def get(url: str, *, what: str, hint: str) -> bytes | None:
    """The body at ``url``; None for a 404. StackDownError (with ``hint``: what to
    do about it) when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our stack)
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        detail = exc.read().decode(errors="replace")[:300]
        raise StackDownError(f"{what} answered {exc.code} for {url}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StackDownError(f"{what} at {url} does not answer ({reason}): {hint}") from exc


def loki_lines(body: dict[str, Any]) -> list[LogLine]:
    """Log lines of a Loki ``query_range`` answer (``resultType: streams``).

    Each stream's labels carry the OTLP record's structured metadata (``trace_id``,
    ``span_id``, ``severity_text``) beside the index label ``service_name``; with
    the ``categorize-labels`` encoding flag they come as each value's third element
    instead, and both are read.
    """
    lines = []
    for stream in body["data"]["result"]:
        labels: dict[str, str] = stream.get("stream", {})
        for value in stream.get("values", []):
            timestamp, line, *rest = value
            metadata = {**labels, **(rest[0].get("structuredMetadata", {}) if rest else {})}
            lines.append(
                LogLine(
                    time_ns=int(timestamp),
                    service=metadata.get("service_name", "?"),
                    severity=metadata.get("severity_text", metadata.get("detected_level", "")),
                    body=line,
                    span_id=hex_id(metadata.get("span_id", "")),
                )
            )
    return sorted(lines, key=lambda log: log.time_ns)


def victorialogs_lines(text: str) -> list[LogLine]:
    """Log lines of a VictoriaLogs ``/select/logsql/query`` answer (JSON lines:
    ``_time``, ``_msg``, and the OTLP record's fields by their OTLP names)."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        record = json.loads(raw)
        lines.append(
            LogLine(
                time_ns=_rfc3339_ns(record["_time"]),
                service=record.get("service.name", "?"),
                severity=record.get("severity", record.get("severity_text", "")),
                body=record.get("_msg", ""),
                span_id=hex_id(record.get("span_id", "")),
            )
        )
    return sorted(lines, key=lambda log: log.time_ns)


_RFC3339 = re.compile(r"(?P<seconds>[^.]{19})(?:\.(?P<fraction>\d{1,9}))?(?P<zone>Z|[+-]\d\d:\d\d)")


def _rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (``datetime`` alone would
    drop the digits past microseconds)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    seconds = int(datetime.fromisoformat(match["seconds"] + zone).timestamp())
    return seconds * 1_000_000_000 + int((match["fraction"] or "").ljust(9, "0"))


class Stores(ABC):
    """A running stack, as ``make trace`` uses it."""

    stack: str  # "Docker" or "native"
    hint: str  # what to do when it does not answer
    trace_store: str
    log_store: str

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    @abstractmethod
    def trace_url(self, trace_id: str) -> str:
        """The trace store's API URL of a trace."""

    def spans(self, trace_id: str) -> list[StoredSpan]:
        """The spans stored so far ([] while the trace is unknown); Tempo and Jaeger
        both answer in OTLP JSON."""
        body = self._json(self.trace_url(trace_id), self.trace_store)
        return trace_spans(body) if body else []

    @abstractmethod
    def logs(self, trace_id: str, start_ns: int, end_ns: int) -> list[LogLine]:
        """The trace's log lines, in time order."""

    @abstractmethod
    def links(self, trace_id: str, start_ns: int, end_ns: int) -> dict[str, str]:
        """Where to look at the trace and its logs in a browser."""

    def _json(self, url: str, what: str) -> Any:
        body = get(url, what=what, hint=self.hint)
        return None if body is None else json.loads(body)


class DockerStores(Stores):
    """Tempo, Loki and Grafana, published on localhost by docker-compose.yml."""

    stack = "Docker"
    hint = (
        "no stack is running? Start one with `make up` (Docker; natively where no Docker "
        "engine runs) or `make dev` (native, in the foreground)"
    )
    trace_store = "Tempo"
    log_store = "Loki"

    def __init__(
        self,
        gateway: str = "http://localhost:8000",
        tempo: str = "http://localhost:3200",
        loki: str = "http://localhost:3100",
        grafana: str = "http://localhost:3000",
    ) -> None:
        super().__init__(gateway)
        self.tempo, self.loki, self.grafana = tempo, loki, grafana

    def trace_url(self, trace_id: str) -> str:
        return f"{self.tempo}/api/v2/traces/{trace_id}"

    def logs(self, trace_id: str, start_ns: int, end_ns: int) -> list[LogLine]:
        query = {
            "query": logql(trace_id),
            "start": str(start_ns - LOG_MARGIN_NS),
            "end": str(end_ns + LOG_MARGIN_NS),
            "direction": "forward",
            "limit": "1000",
        }
        url = f"{self.loki}/loki/api/v1/query_range?{urllib.parse.urlencode(query)}"
        body = self._json(url, "Loki")
        return loki_lines(body) if body else []

    def links(self, trace_id: str, start_ns: int, end_ns: int) -> dict[str, str]:
        time_range = {
            "from": str((start_ns - LOG_MARGIN_NS) // 1_000_000),
            "to": str((end_ns + LOG_MARGIN_NS) // 1_000_000),
        }
        trace_query = {"refId": "A", "queryType": "traceql", "query": trace_id}
        log_query = {"refId": "A", "expr": logql(trace_id), "queryType": "range"}
        return {
            "trace (Grafana, Tempo)": self._explore("tempo", trace_query, time_range),
            "logs (Grafana, Loki)": self._explore("loki", log_query, time_range),
        }

    def _explore(self, datasource: str, query: dict[str, str], time_range: dict[str, str]) -> str:
        """A Grafana Explore URL (datasource uids: deploy/grafana/provisioning)."""
        pane = {"datasource": datasource, "queries": [query], "range": time_range}
        params = {"schemaVersion": "1", "panes": json.dumps({"a": pane}, separators=(",", ":"))}
        return f"{self.grafana}/explore?{urllib.parse.urlencode(params)}"


def logql(trace_id: str) -> str:
    """Every service's log lines of a trace: trace_id is structured metadata in Loki."""
    return f'{{service_name=~".+"}} | trace_id="{trace_id}"'


class NativeStores(Stores):
    """Jaeger and VictoriaLogs of the native stack (``make dev``), on loopback."""

    stack = "native"
    hint = (
        "the native stack recorded in .run/ is not (fully) up: `make ps` lists its "
        "processes, `make logs` shows why; `make down`, then `make up` restarts it"
    )
    trace_store = "Jaeger"
    log_store = "VictoriaLogs"

    def __init__(self, ports: Ports) -> None:
        super().__init__(f"{LOOPBACK}:{ports.entry}")
        self.jaeger = f"{LOOPBACK}:{ports.jaeger_query}"
        self.victoria_logs = f"{LOOPBACK}:{ports.victoria_logs}"

    def trace_url(self, trace_id: str) -> str:
        return f"{self.jaeger}/api/v3/traces/{trace_id}"

    def logs(self, trace_id: str, start_ns: int, end_ns: int) -> list[LogLine]:
        query = {
            "query": logsql(trace_id),
            "start": str((start_ns - LOG_MARGIN_NS) // 1_000_000_000),
            "end": str((end_ns + LOG_MARGIN_NS) // 1_000_000_000 + 1),
            "limit": "1000",
        }
        url = f"{self.victoria_logs}/select/logsql/query?{urllib.parse.urlencode(query)}"
        body = get(url, what="VictoriaLogs", hint=self.hint)
        return victorialogs_lines(body.decode()) if body else []

    def links(self, trace_id: str, start_ns: int, end_ns: int) -> dict[str, str]:
        vmui = urllib.parse.urlencode({"query": logsql(trace_id)}, quote_via=urllib.parse.quote)
        return {
            "trace (Jaeger API)": self.trace_url(trace_id),
            "logs (VictoriaLogs UI)": f"{self.victoria_logs}/select/vmui/#/?{vmui}",
        }


def logsql(trace_id: str) -> str:
    return f'trace_id:"{trace_id}"'
