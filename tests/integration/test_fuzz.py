"""schemathesis against the gateway's own OpenAPI document, on real processes.

Hundreds of generated requests, valid and invalid (a fixed seed: the same cases
every run): none may get a 5xx, and every response must match what the document
says (status, content type, headers, body schema).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def fuzzed(redis_servers: RedisServers, log_dir: Path) -> Iterator[Stack]:
    """A chain of its own: no simulated thinking and no rate limit, so hundreds of
    cases take seconds and none is refused for volume."""
    env = {
        "CHAT_THINKING_BASE_MS": "0",
        "CHAT_THINKING_PER_CHAR_MS": "0",
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
        "GATEWAY_AUTH_FAILURES_PER_MINUTE": "1000000",
    }
    with otlp_receiver() as receiver, chain(receiver, redis_servers, log_dir, env) as running:
        yield running


def test_gateway_conforms_to_its_openapi(fuzzed: Stack) -> None:
    gateway = fuzzed.url("gateway")
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json")
    cases_sent: dict[str, int] = {}
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
            case.call_and_validate(
                base_url=gateway, headers={"X-API-Key": DEMO_API_KEY}, checks=CHECKS
            )

        send()
    assert {"POST /chat", "GET /chat/{session_id}/history"} <= cases_sent.keys()
    assert sum(cases_sent.values()) >= MINIMUM_CASES, cases_sent
