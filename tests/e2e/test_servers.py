"""The services run on uvloop, and on the HTTP parser each is meant to have: httptools
(uvicorn's fast one) for chat and cache, h11 for the gateway, whose request heads h11
bounds (deploy/gateway/uvicorn.env). Read from what each process has loaded."""

from pathlib import Path

import pytest

from stack.native import NativeStack

# service -> whether its uvicorn parses HTTP with httptools (else h11)
PARSERS = {"gateway": False, "chat": True, "cache": True}


@pytest.mark.parametrize(("service", "httptools"), PARSERS.items())
def test_each_service_serves_on_uvloop_with_its_parser(
    stack: NativeStack, service: str, httptools: bool
) -> None:
    (pid,) = [process.pid for process in stack.running if process.name == service]
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "/uvloop/loop." in maps, f"{service} does not run on uvloop"
    assert ("/httptools/parser/parser." in maps) is httptools, service
