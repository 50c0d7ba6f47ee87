"""No plain-text access log line per request: spans, HTTP metrics and the services' own
JSON logs tell that story, and uvicorn's access log cost CPU on every request."""

from pathlib import Path

import httpx

from services.gateway.settings import DEMO_API_KEY
from tests.integration.conftest import Stack


def test_uvicorn_writes_no_access_log_line_per_request(stack: Stack, log_dir: Path) -> None:
    with httpx.Client(base_url=stack.url("gateway"), timeout=10) as client:
        for _ in range(3):
            reply = client.post(
                "/chat", json={"message": "hello, quietly"}, headers={"X-API-Key": DEMO_API_KEY}
            )
            assert reply.status_code == 200
    for service, port in stack.ports.items():
        output = (log_dir / f"{service}-{port}.log").read_text()
        # Its JSON lines are there; uvicorn's `127.0.0.1:5123 - "POST /chat HTTP/1.1" 200`
        # lines (readiness probes included) are not.
        assert '"service.name"' in output, service
        assert 'HTTP/1.1" ' not in output, service
