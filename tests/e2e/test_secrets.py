"""The request that carried an API key, a bearer token and a cookie left no trace of them."""

import json
import secrets
import time

import httpx

from services.gateway.settings import DEMO_API_KEY
from services.telemetry import session_pseudonym
from stack.backends import Backends
from stack.native import NativeStack
from stack.processes import wait_until
from tests.e2e.conftest import SECRET_VALUES, Traffic
from traces.otlp_json import flatten


def _assert_clean(where: str, dump: str) -> None:
    assert dump, f"nothing read from {where}"
    for secret in SECRET_VALUES:
        assert secret not in dump, f"{where} holds a secret"


def test_no_secret_in_jaeger(backends: Backends, traffic: Traffic) -> None:
    trace = wait_until(
        lambda: backends.trace(traffic.secret_trace_id) or None,
        timeout=60,
        what="the secret request's trace",
    )
    _assert_clean("the trace", json.dumps(trace))


def test_no_secret_in_prometheus(backends: Backends, traffic: Traffic) -> None:
    body = backends.get_json(
        backends.ports.prometheus, "/api/v1/series", **{"match[]": '{__name__=~".+"}'}
    )
    _assert_clean("Prometheus series", json.dumps(body["data"]))


def test_no_secret_in_the_log_store(backends: Backends, traffic: Traffic) -> None:
    wait_until(
        lambda: backends.trace_logs(traffic.secret_trace_id) or None,
        timeout=60,
        what="the secret request's logs",
    )
    _assert_clean("VictoriaLogs", json.dumps(backends.logs("*")))


def test_the_collector_masks_credentials_a_service_might_send(
    backends: Backends, stack: NativeStack, injected_spans: list[int]
) -> None:
    """Defence in depth: even if some service recorded a credential, the Collector's
    redaction processor masks it before any store sees it."""
    trace_id, leaked = secrets.token_hex(16), f"leaked-{secrets.token_hex(4)}"
    attributes = [
        {"key": key, "value": {"stringValue": leaked}}
        for key in (
            "http.request.header.authorization",
            "http.request.header.cookie",
            "app.api_key",
        )
    ] + [{"key": "http.request.method", "value": {"stringValue": "GET"}}]
    now = time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": "GET /leaky",
        "kind": 2,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1_000_000),
        "attributes": attributes,
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "leaky"}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.otlp_http}/v1/traces", json=body, timeout=10
    )
    assert response.status_code == 200, response.text
    injected_spans.append(1)

    stored = wait_until(
        lambda: flatten(backends.trace(trace_id)) or None, timeout=60, what="the leaky span"
    )
    kept = stored[0].attributes
    assert kept.pop("http.request.method") == "GET"  # everything else is left alone
    assert set(kept.values()) <= {"****"}  # credentials masked by the redaction processor
    assert leaked not in json.dumps(backends.trace(trace_id))


def test_no_session_id_in_any_store(backends: Backends, stack: NativeStack) -> None:
    """Session ids work as credentials: every store holds their pseudonyms only
    (services/telemetry/_pseudonyms.py), whatever carried them (the history URL, the
    chat's session.id, log lines)."""
    gateway = f"http://127.0.0.1:{stack.ports.entry}"
    with httpx.Client(base_url=gateway, headers={"X-API-Key": DEMO_API_KEY}, timeout=10) as client:
        started = client.post("/chat", json={"message": f"hello {secrets.token_hex(3)}"})
        session_id = started.json()["session_id"]
        turn = client.post("/chat", json={"message": "traces?", "session_id": session_id})
        history = client.get(f"/chat/{session_id}/history")
    assert (started.status_code, turn.status_code, history.status_code) == (200, 200, 200)
    trace_ids = [started.json()["trace_id"], turn.json()["trace_id"], history.headers["x-trace-id"]]
    pseudonym = session_pseudonym(session_id)

    def stored() -> str | None:
        dump = json.dumps([backends.trace(trace_id) for trace_id in trace_ids])
        logs = json.dumps([backends.trace_logs(trace_id) for trace_id in trace_ids])
        # Every hop of the history read, and chat's log line of the turn.
        done = dump.count(f"{pseudonym}/history") >= 2 and f"session {pseudonym}" in logs
        return dump + logs if done else None

    everything = wait_until(stored, timeout=60, what="the session's traces and logs stored")
    assert session_id not in everything
    series = backends.get_json(
        backends.ports.prometheus, "/api/v1/series", **{"match[]": '{__name__=~".+"}'}
    )
    assert session_id not in json.dumps(series["data"])
    assert session_id not in json.dumps(backends.logs("*"))
