"""schemathesis against the gateway's own OpenAPI document, on real processes.

Hundreds of generated requests, valid and invalid (a fixed seed: the same cases
every run): none may get a 5xx, and every response must match what the document
says (status, content type, headers, body schema). Half the history reads ask
for a session that exists, with more turns than a page holds, so the pages
themselves (limit, cursor, next_cursor) are checked too, not only their 404.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.common.models import IDEMPOTENCY_KEY_HEADER
from services.gateway.settings import DEMO_API_KEY
from tests.conftest import RedisServers
from tests.integration.conftest import Stack, chain
from tests.support.otlp import otlp_receiver

# Per operation; the two chat operations have room for far more distinct cases
# than the health probes, which hypothesis exhausts after a handful.
EXAMPLES_PER_OPERATION = 300
MINIMUM_CASES = 500
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HISTORY = "GET /chat/{session_id}/history"
# The history that half the reads ask for is a client's of its own: the new
# sessions the fuzzed POST /chat starts cannot push it out of its client's cap.
READER_KEY = "fuzz-reader-key"
TURNS = 30


@pytest.fixture(scope="module")
def fuzzed(redis_servers: RedisServers, log_dir: Path) -> Iterator[Stack]:
    """A chain of its own: no simulated thinking and no rate limit, so hundreds of
    cases take seconds and none is refused for volume."""
    env = {
        "CHAT_THINKING_BASE_MS": "0",
        "CHAT_THINKING_PER_CHAR_MS": "0",
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
        "GATEWAY_AUTH_FAILURES_PER_MINUTE": "1000000",
        "GATEWAY_API_KEYS": json.dumps({DEMO_API_KEY: "fuzz", READER_KEY: "fuzz-reader"}),
    }
    with otlp_receiver() as receiver, chain(receiver, redis_servers, log_dir, env) as running:
        yield running


def _session_with_turns(gateway: str) -> str:
    session_id = ""
    for n in range(TURNS):
        body = {"message": f"turn {n}"} | ({"session_id": session_id} if session_id else {})
        answer = httpx.post(f"{gateway}/chat", json=body, headers={"X-API-Key": READER_KEY})
        assert answer.status_code == 200 and answer.json()["history_saved"], answer.text
        session_id = answer.json()["session_id"]
    return session_id


def test_gateway_conforms_to_its_openapi(fuzzed: Stack) -> None:
    gateway = fuzzed.url("gateway")
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json")
    real_session = _session_with_turns(gateway)
    cases_sent: dict[str, int] = {}
    # What the new parameters got: how many cases sent each, and the pages' statuses.
    sent_with: dict[str, int] = {"limit": 0, "cursor": 0, IDEMPOTENCY_KEY_HEADER: 0}
    pages: dict[int, int] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document is valid OpenAPI
        operation = result.ok()
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        # derandomize: a fixed seed, the same cases every run; no example database.
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def send(case: schemathesis.Case[Any]) -> None:
            label = case.operation.label
            cases_sent[label] = cases_sent.get(label, 0) + 1
            for name in sent_with:
                sent_with[name] += name in (case.query or {}) or name in (case.headers or {})
            key = DEMO_API_KEY
            real = label == HISTORY and cases_sent[label] % 2 == 0
            if real:
                case.path_parameters = {**(case.path_parameters or {}), "session_id": real_session}
                key = READER_KEY
            response = case.call_and_validate(
                base_url=gateway, headers={"X-API-Key": key}, checks=CHECKS
            )
            if real:
                pages[response.status_code] = pages.get(response.status_code, 0) + 1

        send()
    assert {"POST /chat", HISTORY} <= cases_sent.keys()
    assert sum(cases_sent.values()) >= MINIMUM_CASES, cases_sent
    assert min(sent_with.values()) >= 30, sent_with
    assert pages.get(200, 0) >= 50 and pages.get(422, 0) >= 5, pages
