"""API keys, Authorization headers and cookies never reach telemetry."""

import json

import pytest

from services.gateway.settings import DEMO_API_KEY
from tests.services.conftest import SERVICES, Chain

SECRETS = {
    "X-API-Key": DEMO_API_KEY,
    "Authorization": "Bearer secret-bearer-token-123",
    "Cookie": "session=secret-cookie-456",
}


@pytest.fixture(autouse=True)
def capture_every_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worst case: an operator turned on header capture for everything."""
    for variable in (
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
    ):
        monkeypatch.setenv(variable, ".*")


async def test_no_secret_in_spans_logs_or_metrics(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    for path, body in (("/chat", {"message": "hello"}), ("/chat", {"message": "x" * 3000})):
        response = await chain.gateway.post(path, json=body, headers=SECRETS)
        assert response.status_code in (200, 422)
    wrong_key = {**SECRETS, "X-API-Key": "wrong-key-789"}  # gitleaks:allow (wrong on purpose)
    response = await chain.gateway.post("/chat", json={"message": "hi"}, headers=wrong_key)
    assert response.status_code == 401

    recorded: list[str] = []
    for _, span in chain.all_spans():
        recorded.append(span.to_json())
    for log in chain.logs():
        recorded.append(log.to_json())
    for service in SERVICES:
        for name, points in chain.metric_points(service).items():
            recorded.extend(f"{name} {json.dumps(dict(p.attributes))}" for p in points)
    stdout = capsys.readouterr().out  # the JSON log lines
    # The haystack is real: stdout holds the request's JSON log lines, and the
    # telemetry its spans.
    assert '"message": "chat request from client demo-client answered"' in stdout
    recorded.append(stdout)
    everything = "\n".join(recorded)
    assert "POST /chat" in everything
    for secret in (*SECRETS.values(), "wrong-key-789", "secret-bearer", "secret-cookie"):
        assert secret not in everything
