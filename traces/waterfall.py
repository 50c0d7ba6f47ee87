"""One trace and its log lines, drawn for a terminal or written as JSON (``make trace``).

The waterfall has one line per span, children under their parent in start order:
the span's name indented by depth, its service, when it started (from the trace's
start), how long it took, a bar placing it on the trace's time line, its status
and the attributes that tell the story (HTTP route and status, the URL called,
``cache.hit``, the Redis command). Under it come the trace's log lines in time
order, each under the span that wrote it.

Colour (ERROR in red, one colour per service) is rich's decision: only on a
terminal that has it, never when piped, never with ``NO_COLOR`` set.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.text import Text

from traces.otlp_json import ERROR, OK, StoredSpan
from traces.stores import LogLine

BAR_WIDTH = 30
NAME_WIDTH = 34
ATTRIBUTE_WIDTH = 48  # a longer value is cut, with …
SERVICE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue")


@dataclass(frozen=True)
class Request:
    """The request ``make trace`` sent, and what came back."""

    status: int
    reply: dict[str, Any]


@dataclass(frozen=True)
class TraceView:
    trace_id: str
    spans: list[StoredSpan]
    logs: list[LogLine]
    trace_store: str
    log_store: str
    links: dict[str, str] = field(default_factory=dict)
    request: Request | None = None

    @property
    def start_ns(self) -> int:
        return min(span.start_ns for span in self.spans)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans)


@dataclass(frozen=True)
class Row:
    span: StoredSpan
    depth: int
    prefix: str  # tree guides: "├─ ", "│  └─ ", ...


def rows(spans: list[StoredSpan]) -> list[Row]:
    """The spans depth first, each parent's children in start order. A span whose
    parent is not in the trace is a root."""
    ids = {span.span_id for span in spans}
    children: dict[str, list[StoredSpan]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        children.setdefault(parent, []).append(span)

    def walk(parent: str, depth: int, guides: str) -> Iterator[Row]:
        kids = sorted(children.get(parent, []), key=lambda s: (s.start_ns, s.end_ns))
        for i, span in enumerate(kids):
            last = i == len(kids) - 1
            prefix = "" if depth == 0 else guides + ("└─ " if last else "├─ ")
            yield Row(span, depth, prefix)
            below = "" if depth == 0 else guides + ("   " if last else "│  ")
            yield from walk(span.span_id, depth + 1, below)

    return list(walk("", 0, ""))


def key_attributes(span: StoredSpan) -> str:
    """The few attributes that tell what a span did, as ``key=value``."""
    attrs = span.attributes
    shown: list[tuple[str, object]] = []
    if span.is_redis:
        shown.append(("redis", redis_commands(attrs)))
    if "http.route" in attrs:
        shown.append(("route", attrs["http.route"]))
    if "url.full" in attrs:  # the callee's name is on the next line: its path says enough
        shown.append(("url", urlsplit(str(attrs["url.full"])).path))
    if "http.response.status_code" in attrs:
        shown.append(("status", attrs["http.response.status_code"]))
    for key in ("cache.hit", "chat.thinking.ms", "error.type"):
        if key in attrs:
            shown.append((key, str(attrs[key]).lower() if key == "cache.hit" else attrs[key]))
    if span.status_message:
        shown.append(("message", span.status_message))
    return " ".join(f"{key}={_fit(str(value), ATTRIBUTE_WIDTH)}" for key, value in shown)


def redis_commands(attrs: dict[str, object]) -> str:
    """The command(s) of a Redis span: ``GET``, or ``RPUSH,LTRIM`` for a pipeline."""
    if "db.operation.name" in attrs:
        return str(attrs["db.operation.name"])
    statements = str(attrs.get("db.query.text", "?")).splitlines()
    return ",".join(statement.split(" ", 1)[0] for statement in statements)


def status(span: StoredSpan) -> str:
    return {ERROR: "ERROR", OK: "OK"}.get(span.status_code, "-")


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:.1f}"


def _bar(span: StoredSpan, start_ns: int, total_ns: int) -> str:
    """The span's place on the trace's time line, ``BAR_WIDTH`` characters wide."""
    scale = BAR_WIDTH / max(total_ns, 1)
    left = min(int((span.start_ns - start_ns) * scale), BAR_WIDTH - 1)
    right = max(left + 1, min(round((span.end_ns - start_ns) * scale), BAR_WIDTH))
    return " " * left + "█" * (right - left) + " " * (BAR_WIDTH - right)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(view: TraceView) -> list[Text]:
    """The whole report, line by line."""
    lines: list[Text] = []
    colours = _service_colours(view.spans)
    if view.request:
        lines.extend(_request_lines(view.request))
    total = view.end_ns - view.start_ns
    services = sorted({span.service for span in view.spans})
    lines.append(
        Text(
            f"trace {view.trace_id} · {len(view.spans)} spans · {len(services)} services "
            f"({', '.join(services)}) · {_ms(total)} ms · from {view.trace_store}",
            style="bold",
        )
    )
    header = (
        f"{'span':<{NAME_WIDTH}} {'service':<8} {'start ms':>9} {'took ms':>8}  "
        f"{'0 ms':<{BAR_WIDTH // 2}}{_ms(total) + ' ms':>{BAR_WIDTH - BAR_WIDTH // 2}}  "
        f"{'status':<6} attributes"
    )
    lines.append(Text(header, style="dim"))
    for row in rows(view.spans):
        span = row.span
        line = Text(f"{_fit(row.prefix + span.name, NAME_WIDTH):<{NAME_WIDTH}} ")
        line.append(f"{_fit(span.service, 8):<8}", style=colours[span.service])
        line.append(
            f" {_ms(span.start_ns - view.start_ns):>9} {_ms(span.end_ns - span.start_ns):>8}  "
        )
        line.append(_bar(span, view.start_ns, total), style=colours[span.service])
        line.append("  ")
        line.append(f"{status(span):<6}", style="bold red" if span.status_code == ERROR else "")
        line.append(f" {key_attributes(span)}")
        line.rstrip()
        lines.append(line)
    lines.append(Text(""))
    lines.extend(_log_lines(view, colours))
    if view.links:
        lines.append(Text(""))
        width = max(len(name) for name in view.links)
        lines.extend(Text(f"{name + ':':<{width + 1}} {url}") for name, url in view.links.items())
    return lines


def _request_lines(request: Request) -> list[Text]:
    reply = request.reply
    line = Text("POST /chat → ")
    line.append(str(request.status), style="bold red" if request.status >= 500 else "bold")
    if "reply" in reply:
        line.append(f" · cached: {str(reply.get('cached')).lower()}")
        line.append(f" · session {reply.get('session_id')}")
        return [line, Text(f"reply: {reply['reply']!r}"), Text("")]
    line.append(f" · {reply.get('title', '')}: {reply.get('detail', '')}")
    return [line, Text("")]


def _log_lines(view: TraceView, colours: dict[str, str]) -> list[Text]:
    """The log lines in time order; a span's header before each run of its lines."""
    if not view.logs:
        return [Text(f"no log lines of this trace in {view.log_store}", style="dim")]
    spans = {span.span_id: span for span in view.spans}
    lines = [Text(f"log lines ({view.log_store}, {len(view.logs)}, in time order)", style="bold")]
    current: str | None = None
    for log in view.logs:
        if log.span_id != current:
            current = log.span_id
            span = spans.get(log.span_id)
            header = Text("  ")
            if span is None:
                header.append(f"{log.service} (outside any span of this trace)", style="dim")
            else:
                header.append(span.service, style=colours.get(span.service, ""))
                header.append(f" · {span.name} · span {span.span_id}")
            lines.append(header)
        line = Text(f"    +{_ms(log.time_ns - view.start_ns):>8} ms  ")
        severe = log.severity.upper() in {"ERROR", "CRITICAL", "FATAL"}
        line.append(f"{log.severity:<7}", style="bold red" if severe else "")
        line.append(f" {log.body}")
        lines.append(line)
    return lines


def _service_colours(spans: list[StoredSpan]) -> dict[str, str]:
    """One colour per service, in order of appearance."""
    colours: dict[str, str] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        colours.setdefault(span.service, SERVICE_COLOURS[len(colours) % len(SERVICE_COLOURS)])
    return colours


def print_view(view: TraceView, console: Console | None = None) -> None:
    """Print the report; lines never wrap (a waterfall wider than the terminal
    is still one line per span)."""
    console = console or Console(highlight=False, soft_wrap=True)
    for line in render(view):
        console.print(line)


def as_json(view: TraceView) -> dict[str, Any]:
    """The report as data: ``make trace JSON=1``."""
    spans = {span.span_id: span for span in view.spans}
    return {
        "trace_id": view.trace_id,
        "trace_store": view.trace_store,
        "log_store": view.log_store,
        "request": (
            {"status": view.request.status, "response": view.request.reply}
            if view.request
            else None
        ),
        "duration_ms": round((view.end_ns - view.start_ns) / 1e6, 3),
        "spans": [
            {
                "span_id": row.span.span_id,
                "parent_span_id": row.span.parent_span_id,
                "depth": row.depth,
                "service": row.span.service,
                "name": row.span.name,
                "kind": row.span.kind,
                "start_offset_ms": round((row.span.start_ns - view.start_ns) / 1e6, 3),
                "duration_ms": round((row.span.end_ns - row.span.start_ns) / 1e6, 3),
                "status": status(row.span),
                "attributes": row.span.attributes,
            }
            for row in rows(view.spans)
        ],
        "logs": [
            {
                "offset_ms": round((log.time_ns - view.start_ns) / 1e6, 3),
                "time_unix_nano": str(log.time_ns),
                "service": log.service,
                "severity": log.severity,
                "body": log.body,
                "span_id": log.span_id,
                "span_name": spans[log.span_id].name if log.span_id in spans else None,
            }
            for log in view.logs
        ],
        "links": view.links,
    }
