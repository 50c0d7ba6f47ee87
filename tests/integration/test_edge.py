"""The gateway as the trust boundary, on real processes: what a public client may
send (trace context, baggage, bodies, headers), see (only its own sessions) and
spend (rate limits shared by every worker, key guessing throttled)."""

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from redis import Redis

from services import registry
from stack.native import REPO
from stack.processes import free_port, wait_until
from stack.redis_servers import password_environment
from tests.integration.conftest import FAST_EXPORT, Stack, service_process
from tests.support.otlp import ReceivedSpan

# Three callers of the edge gateway, each with a rate limit of its own.
KEYS = {"key-alice": "alice", "key-bob": "bob", "key-counted": "counted"}
ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}
PER_MINUTE = 12
AUTH_FAILURES = 5
SPOOFED = "client.id=someone-else,spoofed=yes"
CLIENT_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


ADMIN = {"X-Admin-Key": "admin-key-for-edge-tests"}
ADMIN_FAILURES = 3


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path
    admin_url: str  # its admin listener's (a loopback port of its own)


def _gateway_env(stack: Stack, limits_url: str, **settings: str) -> dict[str, str]:
    return {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.receiver.endpoint,
        "GATEWAY_CHAT_URL": stack.url("chat"),
        "GATEWAY_REDIS_URL": limits_url,
        **password_environment(),
        "GATEWAY_API_KEYS": json.dumps(KEYS),
        "GATEWAY_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "GATEWAY_AUTH_FAILURES_PER_MINUTE": str(AUTH_FAILURES),
        "GATEWAY_ADMIN_KEY": ADMIN["X-Admin-Key"],
        "GATEWAY_ADMIN_FAILURES_PER_MINUTE": str(ADMIN_FAILURES),
        **settings,
    }


@contextmanager
def edge_gateway(
    stack: Stack, limits_url: str, log_dir: Path, *args: str, **settings: str
) -> Iterator[Gateway]:
    """A gateway in front of the stack's chat service; ``args`` go to uvicorn,
    ``settings`` into its environment."""
    port = free_port()
    env = _gateway_env(stack, limits_url, **settings)
    with service_process("gateway", port, log_dir, env, args) as process:
        yield Gateway(process.url, log_dir / f"gateway-{port}.log", process.admin_url)


@pytest.fixture(scope="module")
def gateway(stack: Stack, limits_url: str, log_dir: Path) -> Iterator[Gateway]:
    """A gateway with two worker processes (so limits must be shared to hold)."""
    with edge_gateway(stack, limits_url, log_dir, "--workers", "2") as running:
        yield running


def _post_chat(url: str, message: str, headers: dict[str, str], **body: str) -> httpx.Response:
    return httpx.post(f"{url}/chat", json={"message": message, **body}, headers=headers, timeout=10)


def _trace(stack: Stack, trace_id: str, services: set[str]) -> list[ReceivedSpan]:
    def probe() -> list[ReceivedSpan] | None:
        spans = stack.receiver.spans_of(trace_id)
        servers = {s.service for s in spans if s.span.kind == Span.SPAN_KIND_SERVER}
        return spans if servers >= services else None

    return wait_until(probe, timeout=15, what=f"spans of {services} in trace {trace_id}")


# --- Incoming trace context -----------------------------------------------------------


def test_client_baggage_never_reaches_any_signal(stack: Stack, gateway: Gateway) -> None:
    spoofing = {**ALICE, "baggage": SPOOFED}
    accepted = _post_chat(gateway.url, f"hello {uuid.uuid4()}", spoofing)
    refused = _post_chat(gateway.url, "hello", {"X-API-Key": "wrong", "baggage": SPOOFED})
    assert (accepted.status_code, refused.status_code) == (200, 401)

    spans = _trace(stack, accepted.json()["trace_id"], set(registry.names()))
    _trace(stack, refused.headers["x-trace-id"], {"gateway"})
    # The gateway's own client.id, set after authentication, is what travels.
    assert {s.attributes.get("client.id") for s in spans if s.service != "gateway"} == {"alice"}

    # Once the metrics that count both requests have been exported, nothing any
    # service sent anywhere holds the spoofed entries.
    def both_counted() -> bool | None:
        ok = stack.receiver.counter("gateway", "chat.requests", **{"chat.outcome": "ok"})
        refused = stack.receiver.counter(
            "gateway", "chat.requests", **{"chat.outcome": "unauthenticated"}
        )
        return (ok >= 1 and refused >= 1) or None

    wait_until(both_counted, timeout=15, what="chat.requests exported")
    everything = stack.receiver.everything()
    assert "alice" in everything  # the haystack is real
    assert "someone-else" not in everything
    assert "spoofed" not in everything


def test_a_trusted_traceparent_is_continued(stack: Stack, gateway: Gateway) -> None:
    response = _post_chat(
        gateway.url, f"hello {uuid.uuid4()}", {**ALICE, "traceparent": CLIENT_TRACEPARENT}
    )
    assert response.json()["trace_id"] == CLIENT_TRACEPARENT.split("-")[1]
    spans = _trace(stack, response.json()["trace_id"], {"gateway"})
    server = next(
        s for s in spans if s.service == "gateway" and s.span.kind == Span.SPAN_KIND_SERVER
    )
    assert server.parent_span_id == CLIENT_TRACEPARENT.split("-")[2]


def test_an_untrusted_traceparent_starts_a_new_trace_linked_to_it(
    stack: Stack, limits_url: str, log_dir: Path
) -> None:
    untrusting = edge_gateway(
        stack, limits_url, log_dir, GATEWAY_TRUST_INCOMING_TRACE_CONTEXT="false"
    )
    with untrusting as gateway:
        headers = {**ALICE, "traceparent": CLIENT_TRACEPARENT, "baggage": SPOOFED}
        response = _post_chat(gateway.url, f"hi {uuid.uuid4()}", headers)
    assert response.status_code == 200
    client_trace_id, client_span_id = CLIENT_TRACEPARENT.split("-")[1:3]
    trace_id = response.json()["trace_id"]
    assert trace_id != client_trace_id
    spans = _trace(stack, trace_id, set(registry.names()))
    server = next(
        s for s in spans if s.service == "gateway" and s.span.kind == Span.SPAN_KIND_SERVER
    )
    assert server.parent_span_id == ""  # a root: the client's context is not its parent
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in server.span.links] == [
        (client_trace_id, client_span_id)
    ]


def test_a_client_cannot_switch_its_tracing_off(stack: Stack, gateway: Gateway) -> None:
    """A trusted traceparent continues the trace, but its sampled flag (-00) does not
    decide: the gateway samples on its own, and every hop records the request."""
    trace_id = uuid.uuid4().hex
    unsampled = f"00-{trace_id}-b7ad6b7169203331-00"
    response = _post_chat(gateway.url, f"hello {uuid.uuid4()}", {**ALICE, "traceparent": unsampled})
    assert response.status_code == 200
    assert response.json()["trace_id"] == trace_id
    assert response.headers["traceresponse"].endswith("-01")
    spans = _trace(stack, trace_id, set(registry.names()))
    assert {s.service for s in spans} >= set(registry.names())


def test_every_field_of_the_configured_propagators_is_untrusted(
    stack: Stack, redis_url: str, log_dir: Path
) -> None:
    """OTEL_PROPAGATORS adds B3: an untrusting gateway drops its headers too (it once
    dropped traceparent, tracestate and baggage by name only)."""
    b3_trace_id, b3_span_id = uuid.uuid4().hex, "e457b5a2e4d86bd1"
    b3 = {"X-B3-TraceId": b3_trace_id, "X-B3-SpanId": b3_span_id, "X-B3-Sampled": "1"}
    untrusting = edge_gateway(
        stack,
        redis_url,
        log_dir,
        GATEWAY_TRUST_INCOMING_TRACE_CONTEXT="false",
        OTEL_PROPAGATORS="tracecontext,baggage,b3multi",
    )
    with untrusting as gateway:
        response = _post_chat(gateway.url, f"hi {uuid.uuid4()}", {**ALICE, **b3})
    assert response.status_code == 200
    trace_id = response.json()["trace_id"]
    assert trace_id != b3_trace_id
    spans = _trace(stack, trace_id, {"gateway"})
    server = next(
        s for s in spans if s.service == "gateway" and s.span.kind == Span.SPAN_KIND_SERVER
    )
    assert server.parent_span_id == ""
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in server.span.links] == [
        (b3_trace_id, b3_span_id)
    ]


# --- Sessions belong to their client ---------------------------------------------------


def test_another_clients_session_is_not_found_and_untouched(
    gateway: Gateway, redis_url: str
) -> None:
    started = _post_chat(gateway.url, f"hello {uuid.uuid4()}", ALICE)
    session_id = started.json()["session_id"]
    unknown = uuid.uuid4().hex

    def history(session: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{gateway.url}/chat/{session}/history", headers=headers, timeout=10)

    # Bob gets exactly what he would get for a session that never existed.
    for attempt in (
        history(session_id, BOB),
        _post_chat(gateway.url, "hi", BOB, session_id=session_id),
    ):
        assert attempt.status_code == 404
        assert attempt.json()["detail"] == f"Unknown session '{session_id}'."
    assert history(unknown, BOB).json()["detail"] == f"Unknown session '{unknown}'."

    turns = history(session_id, ALICE).json()["turns"]
    assert len(turns) == 1  # Bob's message was not added
    with Redis.from_url(redis_url) as client:
        assert not client.keys(f"*bob*{session_id}*")


# --- Every response is well-formed -----------------------------------------------------


def test_oversized_bodies_are_413_problems_before_parsing(gateway: Gateway) -> None:
    big = {"message": "x" * 20_000}
    declared = httpx.post(f"{gateway.url}/chat", json=big, headers=ALICE, timeout=10)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts as it reads
        yield b'{"message": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    streamed = httpx.post(
        f"{gateway.url}/chat",
        content=chunks(),
        headers={**ALICE, "Content-Type": "application/json"},
        timeout=10,
    )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "The request body is larger than 16384 bytes."
        assert response.headers["x-trace-id"]


def test_oversized_headers_are_refused_by_the_server(gateway: Gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    head = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 1_000_000}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with suppress(BrokenPipeError, ConnectionResetError):  # closed mid-send: refused too
            sock.sendall(head.encode())
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.1 400") or answer == b""


def test_api_responses_carry_security_headers_and_no_server_banner(gateway: Gateway) -> None:
    for response in (
        _post_chat(gateway.url, "hello", ALICE),
        _post_chat(gateway.url, "hello", {}),
        httpx.get(f"{gateway.url}/healthz", timeout=5),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert "server" not in response.headers


def test_slow_clients_are_bounded_by_the_concurrency_limit(
    stack: Stack, limits_url: str, log_dir: Path
) -> None:
    with edge_gateway(stack, limits_url, log_dir, UVICORN_LIMIT_CONCURRENCY="3") as gateway:
        url = f"{gateway.url}/healthz"
        port = int(gateway.url.rsplit(":", 1)[1])
        # Three clients that start a request and never finish it.
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            for sock in slow:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert wait_until(
                lambda: httpx.get(url, timeout=5).status_code == 503 or None,
                timeout=10,
                what="503 while slow clients hold every slot",
            )
        finally:
            for sock in slow:
                sock.close()
        wait_until(
            lambda: httpx.get(url, timeout=5).status_code == 200 or None,
            timeout=10,
            what="200 again",
        )


@pytest.fixture
def broken_chat() -> Iterator[str]:
    """A 'chat service' that answers 200 with a body the gateway cannot use."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_500_keeps_its_headers_and_logs_one_linked_error(
    stack: Stack, limits_url: str, log_dir: Path, broken_chat: str
) -> None:
    origin = "http://localhost:3000"  # allowed by the default CORS settings
    with edge_gateway(stack, limits_url, log_dir, GATEWAY_CHAT_URL=broken_chat) as gateway:
        response = _post_chat(gateway.url, "hello", {**ALICE, "Origin": origin})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "An unexpected error occurred."
    assert "Traceback" not in response.text
    trace_id = response.headers["x-trace-id"]
    assert response.headers["traceresponse"].split("-")[1] == trace_id
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["x-content-type-options"] == "nosniff"

    # Exactly one ERROR record, with the exception, in the trace; and one on stdout.
    errors = [
        log
        for log in stack.receiver.logs_of(trace_id)
        if log.record.severity_text == "ERROR" or log.record.severity_number >= 17
    ]
    assert len(errors) == 1, errors
    record_attributes = {kv.key for kv in errors[0].record.attributes}
    assert "exception.type" in record_attributes
    stdout = gateway.log.read_text()
    error_lines = [json.loads(line) for line in stdout.splitlines() if '"level": "ERROR"' in line]
    assert [line["trace_id"] for line in error_lines] == [trace_id]
    assert "Traceback" in error_lines[0]["exception"]
    assert stdout.count("Traceback") == 1  # no second, unlinked one from the server


# --- Admin endpoints and hosts --------------------------------------------------------


def test_the_admin_endpoints_are_not_on_the_public_port(gateway: Gateway) -> None:
    plan = {"self": {"error_rate": 1.0, "status": 503}}
    for method in ("GET", "PUT", "DELETE"):
        public = httpx.request(
            method, f"{gateway.url}/admin/faults", json=plan, headers=ADMIN, timeout=10
        )
        assert public.status_code == 404, method
        assert public.headers["content-type"] == "application/problem+json"
    assert _post_chat(gateway.url, "still up", ALICE).status_code == 200
    # Each of the two workers has the admin listener, on the same port.
    assert gateway.log.read_text().count(f"admin endpoints on {gateway.admin_url}/admin") == 2
    # Bound to 127.0.0.1 itself, not to every address.
    admin_port = int(gateway.admin_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", admin_port), timeout=5).close()


def test_the_admin_listener_refuses_guessers_then_everyone_for_a_minute(
    stack: Stack, redis_url: str, log_dir: Path
) -> None:
    with edge_gateway(stack, redis_url, log_dir) as gateway:  # one process: one count
        faults = f"{gateway.admin_url}/admin/faults"
        assert httpx.get(faults, headers=ADMIN, timeout=5).json() == {}
        wrong = [
            httpx.put(faults, json={"self": {"error_rate": 1.0}}, headers=h, timeout=5)
            for h in [{}, *({"X-Admin-Key": f"guess-{i}"} for i in range(ADMIN_FAILURES))]
        ]
        right_key = httpx.put(faults, json={"self": {"error_rate": 1.0}}, headers=ADMIN)
        still_up = _post_chat(gateway.url, "hello", ALICE)
    assert [r.status_code for r in wrong] == [401] * ADMIN_FAILURES + [429]
    assert right_key.status_code == 429  # a right guess would look the same
    assert right_key.headers["content-type"] == "application/problem+json"
    assert 1 <= int(right_key.headers["retry-after"]) <= 60
    assert still_up.status_code == 200  # no plan was set


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_only_the_stacks_own_host_names_are_served(gateway: Gateway) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    loadgen = urlsplit(_compose()["services"]["loadgen"]["environment"]["LOCUST_HOST"])

    def host(name: str, path: str = "/page-config") -> httpx.Response:
        return httpx.get(f"{gateway.url}{path}", headers={"Host": name}, timeout=10)

    served = {
        "make dev, the chat page, kubectl port-forward": [f"127.0.0.1:{port}", f"localhost:{port}"],
        "IPv6 loopback": [f"[::1]:{port}"],
        "loadgen in compose": [loadgen.netloc],
    }
    for caller, names in served.items():
        for name in names:
            assert host(name).status_code == 200, (caller, name)
    # A Kubernetes probe names the pod's IP: the health paths answer any host.
    for path in ("/healthz", "/readyz"):
        assert host("10.244.1.7:8000", path).status_code == 200
    # A DNS-rebinding page: its requests name its own host.
    for name in ("evil.example", f"evil.example:{port}", "10.244.1.7:8000", "gateway.evil"):
        refused = host(name)
        assert refused.status_code == 400, name
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == (
            "This server does not serve that host (the Host header)."
        )
        assert refused.headers["x-content-type-options"] == "nosniff"
    rebound = httpx.post(
        f"{gateway.url}/chat", json={"message": "hi"}, headers={**ALICE, "Host": "evil.example"}
    )
    assert rebound.status_code == 400


def test_the_compose_healthcheck_passes(gateway: Gateway) -> None:
    """The probe docker-compose.yml runs inside each container, as it is there."""
    command = _compose()["x-app"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "python", "-c"]
    env = {**os.environ, "PORT": gateway.url.rsplit(":", 1)[1]}
    probe = subprocess.run(
        [sys.executable, "-c", command[3]], env=env, capture_output=True, timeout=10, check=False
    )
    assert probe.returncode == 0, probe.stderr


# --- Rate limits -----------------------------------------------------------------------


def test_the_rate_limit_is_shared_by_every_worker(stack: Stack, gateway: Gateway) -> None:
    counted = {"X-API-Key": "key-counted"}
    unknown = uuid.uuid4().hex

    def attempt(_: int) -> httpx.Response:
        # A new connection each time, so both workers take requests.
        return httpx.get(f"{gateway.url}/chat/{unknown}/history", headers=counted, timeout=10)

    # Both worker processes serve them, and their Redis calls are spans too.
    def instances() -> set[object] | None:
        spans = [
            s
            for s in stack.receiver.spans
            if s.service == "gateway" and s.attributes.get("client.id") == "counted"
        ]
        found = {s.resource["service.instance.id"] for s in spans}
        return found if len(found) >= 2 else None

    more: list[httpx.Response] = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(attempt, range(3 * PER_MINUTE)))

        def both_workers_served() -> set[object] | None:
            found = instances()
            if found is None:
                # Which worker accepts a connection is up to the kernel and the two event
                # loops; on a busy machine one may take them all. More tries until the
                # other has served one too.
                more.extend(pool.map(attempt, range(6)))
            return found

        wait_until(both_workers_served, timeout=30, what="spans from both gateway workers")
    # The limit was spent before these: a worker with a limit of its own would have
    # let its first ones through.
    assert [r.status_code for r in more] == [429] * len(more)

    allowed = [r for r in responses if r.status_code == 404]
    limited = [r for r in responses if r.status_code == 429]
    assert len(allowed) + len(limited) == len(responses)
    # Per-worker limits would allow up to twice as many. (+1: a window boundary
    # crossed mid-test may free one slot.)
    assert PER_MINUTE <= len(allowed) <= PER_MINUTE + 1

    first = allowed[0]
    assert first.headers["ratelimit-policy"] == f'"per-client";q={PER_MINUTE};w=60'
    assert first.headers["ratelimit"].startswith('"per-client";r=')
    refusal = limited[0]
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.headers["ratelimit"].startswith('"per-client";r=0;t=')
    assert int(refusal.headers["retry-after"]) >= 1

    trace_id = allowed[0].headers["x-trace-id"]
    spans = _trace(stack, trace_id, {"gateway"})
    assert any(
        s.service == "gateway" and s.attributes.get("db.system.name") == "redis" for s in spans
    )
    # A throttled request's span names the client that was throttled.
    refused = _trace(stack, refusal.headers["x-trace-id"], {"gateway"})
    (server,) = [s for s in refused if s.span.kind == Span.SPAN_KIND_SERVER]
    assert server.attributes["client.id"] == "counted"
    assert server.attributes["http.response.status_code"] == 429


def _from(address: str) -> httpx.Client:
    """A client whose requests come from ``address`` (any of 127.0.0.0/8 is loopback):
    the limits of one test's address leave the other tests' alone."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def _refusal(response: httpx.Response) -> tuple[object, ...]:
    """What a client can read of a refusal, less what differs per request: its trace
    and date, and the seconds until the window frees up (two requests may straddle a
    second; that they are there and equal in kind is what matters)."""
    headers = {k: v for k, v in response.headers.items() if k not in {"date", "x-trace-id"}}
    headers.pop("traceresponse", None)
    headers.pop("content-length", None)  # the body's trace id
    if "retry-after" in headers:
        headers["retry-after"] = "<seconds>"
    if "ratelimit" in headers:
        headers["ratelimit"] = re.sub(r";t=\d+", ";t=<seconds>", headers["ratelimit"])
    body = {k: v for k, v in response.json().items() if k != "trace_id"}
    return response.status_code, sorted(headers.items()), body


@pytest.fixture
def own_limits(redis_url: str) -> str:
    """A Redis database of its own for the rate limits: a test that floods from
    127.0.0.1 leaves that address's budget to the other tests."""
    url = redis_url.rsplit("/", 1)[0] + "/9"
    with Redis.from_url(url) as client:
        client.flushdb()
    return url


def test_a_flood_of_wrong_keys_is_throttled_and_known_clients_are_still_served(
    stack: Stack, own_limits: str, log_dir: Path
) -> None:
    limits = own_limits
    with edge_gateway(stack, limits, log_dir, GATEWAY_RATE_LIMIT_PER_MINUTE="600") as gateway:
        url = gateway.url
        session = _post_chat(url, f"hello {uuid.uuid4()}", BOB).json()["session_id"]

        def bob() -> int:  # a user of the chat page, from the same address
            history = f"{url}/chat/{session}/history"
            return httpx.get(history, headers=BOB, timeout=10).status_code

        def guess(i: int) -> httpx.Response:
            return _post_chat(url, "hi", {"X-API-Key": f"guess-{i}"})

        with ThreadPoolExecutor(max_workers=4) as pool:
            flood = pool.map(guess, range(4 * AUTH_FAILURES))
            during = [bob() for _ in range(8)]
            guesses = list(flood)
        after = [bob() for _ in range(3)]
        # Now over the budget: a right key of a client not known at this address
        # is refused exactly like a wrong one, so a guesser learns nothing.
        alice_unknown_here = _post_chat(url, "hi", ALICE)
        wrong = guess(-1)
    assert during + after == [200] * 11
    statuses = [r.status_code for r in guesses]
    # (+1: a window boundary crossed mid-test may free one slot.)
    assert AUTH_FAILURES <= statuses.count(401) <= AUTH_FAILURES + 1
    assert statuses.count(429) == len(statuses) - statuses.count(401)
    refused = next(r for r in guesses if r.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert "failed authentications" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit"].startswith('"auth-failures";r=0;t=')
    assert _refusal(alice_unknown_here) == _refusal(wrong)
    assert alice_unknown_here.status_code == 429
    # The flood is in the log once it used up the budget, with its real address.
    warnings = [
        json.loads(line)["message"]
        for line in gateway.log.read_text().splitlines()
        if "failed authentications from" in line
    ]
    assert warnings and all("from 127.0.0.1 reached" in w for w in warnings), warnings


def test_another_address_keeps_its_own_failure_budget(stack: Stack, gateway: Gateway) -> None:
    with _from("127.0.0.2") as guesser, _from("127.0.0.5") as other:
        statuses = [
            guesser.post(
                f"{gateway.url}/chat", json={"message": "hi"}, headers={"X-API-Key": f"g-{i}"}
            ).status_code
            for i in range(AUTH_FAILURES + 1)
        ]
        elsewhere = other.post(f"{gateway.url}/chat", json={"message": "hi"}, headers={})
        first_time_here = other.post(f"{gateway.url}/chat", json={"message": "hi"}, headers=BOB)
    assert statuses == [401] * AUTH_FAILURES + [429]
    assert elsewhere.status_code == 401
    assert first_time_here.status_code == 200


def _server_span(stack: Stack, response: httpx.Response) -> ReceivedSpan:
    spans = _trace(stack, response.headers["x-trace-id"], {"gateway"})
    (server,) = [s for s in spans if s.span.kind == Span.SPAN_KIND_SERVER]
    return server


@pytest.mark.parametrize(
    ("trusted", "counted_as"),
    [
        (None, "127.0.0.1"),  # the stacks' setting: no proxy trusted
        ("127.0.0.1", "198.51.100.7"),  # the peer is a trusted proxy
    ],
    ids=["untrusted peer", "trusted proxy"],
)
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    stack: Stack, own_limits: str, log_dir: Path, trusted: str | None, counted_as: str
) -> None:
    """From 127.0.0.1, which uvicorn would trust by default: natively and through
    `kubectl port-forward` every request arrives from there."""
    settings = {}  # untrusted: deploy/gateway/uvicorn.env as it is
    if trusted:
        settings = {"UVICORN_PROXY_HEADERS": "true", "UVICORN_FORWARDED_ALLOW_IPS": trusted}
    edge = edge_gateway(stack, own_limits, log_dir, **settings)
    with edge as gateway, _from("127.0.0.1") as client:

        def guess(i: int, forwarded_for: str) -> httpx.Response:
            headers = {"X-API-Key": f"guess-{i}", "X-Forwarded-For": forwarded_for}
            return client.post(f"{gateway.url}/chat", json={"message": "hi"}, headers=headers)

        # A new claimed address each time: believed, no budget would ever run out.
        spoofing = [guess(i, f"203.0.113.{i}") for i in range(AUTH_FAILURES + 1)]
        # One claimed address throughout: believed, its own budget runs out.
        claiming = [guess(i, "198.51.100.7") for i in range(AUTH_FAILURES + 1)]
    spoofed_statuses = [r.status_code for r in spoofing]
    if trusted:
        assert spoofed_statuses == [401] * (AUTH_FAILURES + 1)
        assert [r.status_code for r in claiming][-1] == 429
    else:
        assert spoofed_statuses == [401] * AUTH_FAILURES + [429]
    # The span names the address the limit counted.
    assert _server_span(stack, claiming[0]).attributes["client.address"] == counted_as
    assert _server_span(stack, spoofing[0]).attributes["client.address"] == (
        "203.0.113.0" if trusted else "127.0.0.1"
    )
    # And so does the log line of the address whose budget ran out.
    log = gateway.log.read_text()
    assert f"failed authentications from {counted_as} reached" in log
    if not trusted:
        assert "203.0.113." not in log and "198.51.100.7" not in log


def test_without_redis_the_gateway_fails_open_and_says_so(stack: Stack, log_dir: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with edge_gateway(stack, nowhere, log_dir) as gateway:
        statuses = [
            _post_chat(gateway.url, "hello", ALICE).status_code
            for _ in range(PER_MINUTE + 2)  # past the limit: nothing counts them
        ]
        assert statuses == [200] * (PER_MINUTE + 2)
        wait_until(
            lambda: (
                stack.receiver.counter("gateway", "gateway.rate_limit.bypassed") >= PER_MINUTE + 2
                or None
            ),
            timeout=15,
            what="gateway.rate_limit.bypassed exported",
        )
    stdout = gateway.log.read_text()
    warnings = [line for line in stdout.splitlines() if "rate-limit store unreachable" in line]
    assert len(warnings) == 1 and '"level": "WARNING"' in warnings[0]


# --- Metrics count every outcome -------------------------------------------------------


def test_chat_requests_count_every_outcome(stack: Stack, gateway: Gateway) -> None:
    def count(outcome: str) -> float:
        return stack.receiver.counter("gateway", "chat.requests", **{"chat.outcome": outcome})

    # outcome -> (request, the status it answers)
    sends: dict[str, tuple[Callable[[], httpx.Response], int]] = {
        "ok": (lambda: _post_chat(gateway.url, "hello", ALICE), 200),
        "unauthenticated": (lambda: _post_chat(gateway.url, "hello", {}), 401),
        "invalid": (lambda: _post_chat(gateway.url, "", ALICE), 422),
        "too_large": (lambda: _post_chat(gateway.url, "x" * 20_000, ALICE), 413),
        "not_found": (
            lambda: _post_chat(gateway.url, "hi", ALICE, session_id=uuid.uuid4().hex),
            404,
        ),
    }
    # The module's earlier tests used this gateway too: count from an export that began
    # after their last request (exports run every second), or one of theirs exported
    # late would look like one of these.
    exports = stack.receiver.metric_exports("gateway")
    wait_until(
        lambda: stack.receiver.metric_exports("gateway") >= exports + 2 or None,
        timeout=15,
        what="two more metric exports from the gateway",
    )
    before = {outcome: count(outcome) for outcome in sends}
    for outcome, (send, status) in sends.items():
        assert send().status_code == status, outcome
    wait_until(
        lambda: all(count(outcome) == before[outcome] + 1 for outcome in sends) or None,
        timeout=15,
        what="one more chat.requests per outcome",
    )


def test_api_keys_can_come_from_a_file_and_are_never_logged(
    stack: Stack, limits_url: str, log_dir: Path, tmp_path: Path
) -> None:
    keys_file = tmp_path / "api-keys.json"
    keys_file.write_text(json.dumps({"file-key-5b1e": "from-file"}))
    from_file = edge_gateway(
        stack, limits_url, log_dir, GATEWAY_API_KEYS_FILE=str(keys_file), GATEWAY_LOG_LEVEL="DEBUG"
    )
    with from_file as gateway:
        url = gateway.url
        assert _post_chat(url, "hello", {"X-API-Key": "file-key-5b1e"}).status_code == 200
        assert _post_chat(url, "hello", ALICE).status_code == 401  # the file replaced the env
        trace_id = _post_chat(url, "hello", {"X-API-Key": "file-key-5b1e"}).json()["trace_id"]
        _trace(stack, trace_id, {"gateway", "chat"})
    assert "file-key-5b1e" not in gateway.log.read_text()
    assert "file-key-5b1e" not in stack.receiver.everything()
    assert "from-file" in stack.receiver.everything()
