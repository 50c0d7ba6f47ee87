"""``make trace`` from recorded store answers: Jaeger + VictoriaLogs (recorded from a
native run) and Tempo + Loki (the same kind of trace in their documented shapes).
See the ``_fixture`` header of each file in fixtures/."""

import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from stack.processes import free_port
from traces.otlp_json import ERROR, StoredSpan, attributes, missing_parts, trace_spans
from traces.stores import DockerStores, loki_lines, victorialogs_lines
from traces.view import TraceError, parse_trace_id, trace_view
from traces.waterfall import Request, TraceView, as_json, print_view

FIXTURES = Path(__file__).parent / "fixtures"
JAEGER = json.loads((FIXTURES / "jaeger_trace.json").read_text())
TEMPO = json.loads((FIXTURES / "tempo_trace.json").read_text())
JAEGER_TRACE_ID = "4626cea44775956111c2ab02291f6f73"
TEMPO_TRACE_ID = "6284659c43313bcaf95ef89cbcf496ef"


def _recorded_view(trace_store: str) -> TraceView:
    """The view of a fixture: "Jaeger" (with VictoriaLogs) or "Tempo" (with Loki)."""
    if trace_store == "Jaeger":
        logs = victorialogs_lines(JAEGER["logs_response"])
        return TraceView(
            JAEGER_TRACE_ID, trace_spans(JAEGER["trace_response"]), logs, "Jaeger", "VictoriaLogs"
        )
    logs = loki_lines(TEMPO["logs_response"])
    return TraceView(TEMPO_TRACE_ID, trace_spans(TEMPO["trace_response"]), logs, "Tempo", "Loki")


def _printed(view: TraceView, *, terminal: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, highlight=False, soft_wrap=True)
    print_view(view, console)
    return out.getvalue()


def _waterfall(text: str) -> list[str]:
    """The span lines: from the column header to the first blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("span ")) + 1
    return lines[start : lines.index("", start)]


# --- Jaeger (recorded) ---------------------------------------------------------------------


def test_the_waterfall_nests_every_span_under_its_parent_in_start_order() -> None:
    text = _printed(_recorded_view("Jaeger"))
    assert text.splitlines()[0] == (
        f"trace {JAEGER_TRACE_ID} · 18 spans · 3 services (cache, chat, gateway) · 113.1 ms"
        " · from Jaeger"
    )
    rows = [(line[:34].rstrip(), line[35:43].rstrip()) for line in _waterfall(text)]
    assert rows == [
        ("POST /chat", "gateway"),
        ("├─ EVALSHA", "gateway"),  # its rate limits, in Redis
        ("├─ EVALSHA", "gateway"),
        ("├─ EVALSHA", "gateway"),
        ("└─ POST", "gateway"),
        ("   └─ POST /replies", "chat"),
        ("      ├─ chat.cache_lookup", "chat"),
        ("      │  └─ GET", "chat"),
        ("      │     └─ GET /cache/{key}", "cache"),
        ("      │        ├─ GET", "cache"),
        ("      │        └─ HINCRBY", "cache"),
        ("      ├─ chat.generate_reply", "chat"),
        ("      ├─ PUT", "chat"),
        ("      │  └─ PUT /cache/{key}", "cache"),
        ("      │     └─ SET", "cache"),
        ("      └─ POST", "chat"),
        ("         └─ POST /lists/{key}", "cache"),
        ("            └─ RPUSH LTRIM EXPIRE…", "cache"),
    ]


def test_each_line_has_start_duration_bar_status_and_key_attributes() -> None:
    lines = _waterfall(_printed(_recorded_view("Jaeger")))
    by_name = {line[:34].strip(" │├└─"): line for line in lines}
    root, thinking = lines[0], by_name["chat.generate_reply"]
    assert root[44:62].split() == ["0.0", "113.1"]
    assert root[64:94] == "█" * 30  # the root spans the whole trace
    assert thinking[44:62].split() == ["26.5", "73.2"]
    bar = thinking[64:94]  # from 26.5 to 99.7 of 113.1 ms, on 30 characters
    assert (bar.index("█"), bar.count("█")) == (7, 19)
    assert root.endswith("-      route=/chat status=200")
    assert by_name["chat.cache_lookup"].endswith("cache.hit=false")
    assert thinking.endswith("chat.thinking.ms=73")
    cache_call = "url=/cache/reply:68da0b8ef37bbf82d50ceb23fd34ed5a status=404 error.type=404"
    assert lines[7].endswith(f"OK     {cache_call}")  # a miss: 404, yet not an error
    assert by_name["SET"].endswith("redis=SET")
    assert by_name["EVALSHA"].endswith("redis=EVALSHA")
    assert by_name["RPUSH LTRIM EXPIRE…"].endswith("redis=RPUSH,LTRIM,EXPIRE,LLEN")
    assert "url=/lists/history:demo-client:70e5b14d283b4e46966e… status=200" in lines[-3]


def test_log_lines_follow_in_time_order_under_the_span_that_wrote_them() -> None:
    text = _printed(_recorded_view("Jaeger"))
    logs = text.split("log lines (VictoriaLogs, 2, in time order)\n", 1)[1].splitlines()
    assert logs[:4] == [
        "  chat · POST /replies · span 2a84743bb47af8a3",
        "    +   109.7 ms  INFO    replied in session 70e5b14d283b4e46966ed40da36aeaad"
        " (cache hit: False)",
        "  gateway · POST /chat · span fc460e7bf274f52a",
        "    +   112.0 ms  INFO    chat request from client demo-client answered",
    ]


def test_piped_output_has_no_colour_and_a_terminal_gets_some() -> None:
    assert "\x1b[" not in _printed(_recorded_view("Jaeger"))
    assert "\x1b[" in _printed(_recorded_view("Jaeger"), terminal=True)


# --- Tempo and Loki (their documented shapes) ----------------------------------------------


def test_tempo_ids_in_base64_and_enum_names_read_as_otlp() -> None:
    spans = trace_spans(TEMPO["trace_response"])
    root = next(span for span in spans if not span.parent_span_id)
    assert (root.service, root.name, root.kind) == ("gateway", "POST /chat", 2)
    assert len(root.span_id) == 16 and int(root.span_id, 16)
    assert {span.status_code for span in spans} == {ERROR}
    assert missing_parts(spans) == []
    redis = next(span for span in spans if span.is_redis)
    assert redis.status_message == "ConnectionError: Connection closed by server."
    assert "exception" in redis.event_names


def test_errors_are_red_on_a_terminal_and_say_why() -> None:
    problem = {"title": "Bad Gateway", "detail": "x"}
    view = replace(_recorded_view("Tempo"), request=Request(502, problem))
    plain = _printed(view)
    assert plain.startswith("POST /chat → 502 · Bad Gateway: x\n")
    lines = _waterfall(plain)
    assert len(lines) == 9 and all(line[96:101] == "ERROR" for line in lines)
    assert lines[-1].endswith("redis=GET message=ConnectionError: Connection closed by server.")
    # A message longer than ATTRIBUTE_WIDTH is cut.
    assert lines[2].endswith("message=ConnectionError: Error 111 connecting to 127.0.…")
    coloured = _printed(view, terminal=True)
    assert "\x1b[1;31mERROR" in coloured  # bold red


def test_loki_streams_become_log_lines_in_time_order() -> None:
    text = _printed(_recorded_view("Tempo"))
    logs = text.split("log lines (Loki, 4, in time order)\n", 1)[1].splitlines()
    # The gateway's two lines come apart: others wrote in between.
    headers = [line.split(" · ")[0].strip() for line in logs[0:8:2]]
    assert headers == ["gateway", "cache", "chat", "gateway"]
    assert logs[1].endswith("rate-limit store unreachable, serving without limits: ConnectionError")
    assert logs[3].endswith(
        "WARN    GET /cache/reply:8df4b1ebe3613fcacc9ea9e70de26555 failed: Redis is unavailable."
    )


def test_loki_categorized_labels_are_read_too() -> None:
    """With the categorize-labels flag, structured metadata is each value's third element."""
    body = json.loads(json.dumps(TEMPO["logs_response"]))
    for stream in body["data"]["result"]:
        metadata = {k: stream["stream"].pop(k) for k in ("span_id", "severity_text", "trace_id")}
        stream["values"] = [
            [*value, {"structuredMetadata": metadata}] for value in stream["values"]
        ]
    assert loki_lines(body) == loki_lines(TEMPO["logs_response"])


def test_json_output_has_the_tree_the_logs_and_the_links() -> None:
    view = replace(_recorded_view("Jaeger"), links={"trace (Jaeger API)": "http://x"})
    data = json.loads(json.dumps(as_json(view)))
    assert data["trace_id"] == JAEGER_TRACE_ID
    assert [(s["depth"], s["name"]) for s in data["spans"][:6]] == [
        (0, "POST /chat"),
        (1, "EVALSHA"),
        (1, "EVALSHA"),
        (1, "EVALSHA"),
        (1, "POST"),
        (2, "POST /replies"),
    ]
    assert data["spans"][1]["parent_span_id"] == data["spans"][0]["span_id"]
    assert data["spans"][0]["attributes"]["http.response.status_code"] == 200
    assert [(log["service"], log["span_name"]) for log in data["logs"]] == [
        ("chat", "POST /replies"),
        ("gateway", "POST /chat"),
    ]
    assert data["links"] == {"trace (Jaeger API)": "http://x"}


# --- Trace ids and completeness ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4626cea44775956111c2ab02291f6f73", "4626cea44775956111c2ab02291f6f73"),
        ("ABC", "00000000000000000000000000000abc"),  # Tempo's search drops leading zeros
        (" 0c8b9f09535c7d04b9991097d0e3eb29\n", "0c8b9f09535c7d04b9991097d0e3eb29"),
        ("00-4626cea44775956111c2ab02291f6f73-2fb88a943a9674f4-01", JAEGER_TRACE_ID),
    ],
)
def test_trace_ids_from_anywhere(raw: str, expected: str) -> None:
    assert parse_trace_id(raw) == expected


@pytest.mark.parametrize("raw", ["", "xyz", "0", "0" * 32, "1" * 33, "2c8b-9f09"])
def test_malformed_trace_ids_are_refused(raw: str) -> None:
    with pytest.raises(TraceError, match="malformed trace id") as error:
        parse_trace_id(raw)
    assert error.value.exit_code == 2


def _without(spans: list[StoredSpan], name: str, service: str) -> list[StoredSpan]:
    drop = next(s for s in spans if (s.name, s.service) == (name, service))
    return [span for span in spans if span is not drop]


def test_a_trace_is_complete_only_with_every_part() -> None:
    spans = trace_spans(JAEGER["trace_response"])
    assert missing_parts(spans) == []
    assert missing_parts([]) == ["any span"]
    assert missing_parts(_without(spans, "POST /chat", "gateway")) == [
        "the root span",
        "the parents of 4 span(s)",  # the gateway's Redis calls and its call to chat
    ]
    assert missing_parts(_without(spans, "POST", "gateway")) == ["the parents of 1 span(s)"]
    put = next(s for s in spans if s.name == "PUT" and s.service == "chat")
    assert missing_parts(_without(spans, "PUT /cache/{key}", "cache")) == [
        "the parents of 1 span(s)",  # its Redis SET
        f"the server span answering chat's call {put.span_id}",
    ]
    assert missing_parts(_without(spans, "SET", "cache")) == [
        f"the Redis spans under cache's span {_span(spans, 'PUT /cache/{key}').span_id}"
    ]
    # A failed route (an injected fault) may have stopped before Redis.
    store = _span(spans, "PUT /cache/{key}")
    failed = [replace(s, status_code=ERROR) if s is store else s for s in spans]
    assert missing_parts(_without(failed, "SET", "cache")) == []
    # The root under a caller's traceparent: complete, its parent is outside.
    root = _span(spans, "POST /chat")
    adopted = [replace(s, parent_span_id="1" * 16) if s is root else s for s in spans]
    assert missing_parts(adopted) == []


def _span(spans: list[StoredSpan], name: str) -> StoredSpan:
    return next(span for span in spans if span.name == name)


# --- The command against recorded answers served on loopback ------------------------------


class _Recorded(BaseHTTPRequestHandler):
    """Serves the Tempo and Loki answers of the fixture; remembers every request."""

    trace: dict[str, Any] = TEMPO["trace_response"]
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path.startswith(f"/api/v2/traces/{TEMPO_TRACE_ID}"):
            body: object = type(self).trace
        elif self.path.startswith("/loki/api/v1/query_range"):
            body = TEMPO["logs_response"]
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def docker_stores() -> Iterator[DockerStores]:
    """Tempo and Loki as recorded, Grafana's links pointing at grafana.test."""
    _Recorded.requests = []
    _Recorded.trace = TEMPO["trace_response"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield DockerStores(gateway=url, tempo=url, loki=url, grafana="http://grafana.test")
    finally:
        server.shutdown()
        server.server_close()


def _view(stores: DockerStores, trace_id: str, timeout: float = 5) -> TraceView:
    return trace_view(
        stores,
        trace_id=trace_id,
        message=None,
        session=None,
        api_key="k",
        timeout=timeout,
        log_settle=0.05,
    )


def test_an_existing_trace_with_its_logs_and_grafana_links(docker_stores: DockerStores) -> None:
    view = _view(docker_stores, TEMPO_TRACE_ID.upper())
    assert len(view.spans) == 9 and len(view.logs) == 4
    loki = next(urllib.parse.urlsplit(p) for p in _Recorded.requests if p.startswith("/loki"))
    query = urllib.parse.parse_qs(loki.query)
    assert query["query"] == [f'{{service_name=~".+"}} | trace_id="{TEMPO_TRACE_ID}"']
    assert int(query["start"][0]) < view.start_ns < view.end_ns < int(query["end"][0])
    trace_link, logs_link = view.links.values()
    trace_pane = _explore_pane(trace_link)
    assert trace_pane["datasource"] == "tempo"
    assert trace_pane["queries"][0]["query"] == TEMPO_TRACE_ID
    logs_pane = _explore_pane(logs_link)
    assert logs_pane["datasource"] == "loki"
    assert logs_pane["queries"][0]["expr"] == query["query"][0]
    assert int(logs_pane["range"]["from"]) < view.start_ns // 1_000_000


def _explore_pane(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://grafana.test/explore"
    pane: dict[str, Any] = json.loads(urllib.parse.parse_qs(parts.query)["panes"][0])["a"]
    return pane


def test_an_incomplete_trace_fails_at_the_deadline_saying_what_is_missing(
    docker_stores: DockerStores,
) -> None:
    trace = json.loads(json.dumps(TEMPO["trace_response"]))
    for block in trace["trace"]["resourceSpans"]:  # the gateway's spans never arrive
        if attributes(block["resource"]["attributes"])["service.name"] == "gateway":
            block["scopeSpans"] = []
    _Recorded.trace = trace
    with pytest.raises(
        TraceError, match=r"incomplete in Tempo .* after 1 s: 5 spans from cache, chat"
    ):
        _view(docker_stores, TEMPO_TRACE_ID, timeout=1)


def test_an_unknown_trace_is_not_found(docker_stores: DockerStores) -> None:
    with pytest.raises(TraceError, match=r"trace 0+1 not found in Tempo"):
        _view(docker_stores, "1", timeout=0.5)


def test_no_stack_names_the_command_that_starts_one() -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    stores = DockerStores(gateway=nothing, tempo=nothing, loki=nothing)
    with pytest.raises(TraceError, match=r"gateway at .* does not answer .*`make up`.*`make dev`"):
        trace_view(stores, trace_id=None, message="hi", session=None, api_key="k", timeout=1)
    with pytest.raises(TraceError, match=r"Tempo at .* does not answer .*`make up`"):
        _view(stores, TEMPO_TRACE_ID, timeout=1)
