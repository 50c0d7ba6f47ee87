"""The gateway's OpenAPI document names every error a client can get."""

from services.common.problems import PROBLEM_JSON
from services.gateway.main import create_app
from services.gateway.settings import GatewaySettings
from tests.services.conftest import InMemoryTelemetry

ERRORS = {"400", "401", "404", "413", "422", "429", "502", "503", "504"}


def test_every_error_status_is_documented_as_problem_json() -> None:
    app = create_app(GatewaySettings(), InMemoryTelemetry().outbound())
    paths = app.openapi()["paths"]
    for path, method in (("/chat", "post"), ("/chat/{session_id}/history", "get")):
        responses = paths[path][method]["responses"]
        assert responses.keys() >= ERRORS, path
        for status in ERRORS:
            content = responses[status]["content"]
            assert list(content) == [PROBLEM_JSON], (path, status)
            schema = content[PROBLEM_JSON]["schema"]
            assert {"title", "status", "detail"} <= set(schema["required"])
        assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= responses["429"][
            "headers"
        ].keys()
    security = paths["/chat"]["post"]["security"]
    assert security == [{"APIKeyHeader": []}]


def test_history_pages_and_turn_ids_are_in_the_document() -> None:
    app = create_app(GatewaySettings(), InMemoryTelemetry().outbound())
    paths = app.openapi()["paths"]
    history = {p["name"]: p for p in paths["/chat/{session_id}/history"]["get"]["parameters"]}
    limit = history["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    assert history["cursor"]["in"] == "query"
    chat = {p["name"]: p for p in paths["/chat"]["post"]["parameters"]}
    key = chat["Idempotency-Key"]
    assert key["in"] == "header" and "pattern" in str(key["schema"])
