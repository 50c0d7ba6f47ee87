"""The chat page in headless Chromium (Playwright), against the whole native stack.

Chromium is Debian's (``chromium``, installed by ``tools/require.sh`` from
``make test``): Playwright's own browser builds cannot be downloaded here. The
stack runs on free ports for this package only, so the spans these tests send
from the browser never mix with the counts of tests/e2e.
"""

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    sync_playwright,
)

from stack.backends import Backends
from stack.native import NativeStack, Ports, native_stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    with native_stack(tmp_path_factory.mktemp("browser-stack"), Ports.free()) as running:
        yield running


@pytest.fixture(scope="package")
def backends(stack: NativeStack) -> Backends:
    return Backends(stack.ports)


@pytest.fixture(scope="package")
def gateway(stack: NativeStack) -> str:
    return f"http://127.0.0.1:{stack.ports.entry}"


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing: tools/require.sh chromium chromium installs it")
    browser = playwright.chromium.launch(executable_path=chromium)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class Visit:
    """A page in a fresh browser context (its own session storage), and everything
    it asked for and complained about."""

    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)  # method and URL of each
    console_errors: list[str] = field(default_factory=list)
    otlp_bodies: list[str] = field(default_factory=list)  # what the page's exporter sent

    def elsewhere(self) -> list[str]:
        """Requests to any origin but the gateway's."""
        return [r for r in self.requests if not r.split(" ", 1)[1].startswith(self.origin)]


@pytest.fixture
def visit(browser: Browser, gateway: str) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 900, "height": 760})
    page = context.new_page()
    seen = Visit(page, gateway)

    def on_request(request: Request) -> None:
        seen.requests.append(f"{request.method} {request.url}")
        if request.url.endswith("/otlp/v1/traces") and request.post_data:
            seen.otlp_bodies.append(request.post_data)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    # Nothing may leave for another origin: such a request fails (and is listed).
    # A pattern, not a Python predicate: a request a route intercepts waits for
    # Python to handle it, and Python handles nothing while a test polls Jaeger.
    elsewhere = re.compile(f"^(?!{re.escape(gateway)}/)")
    context.route(elsewhere, lambda route: route.abort("blockedbyclient"))
    try:
        yield seen
    finally:
        context.close()


def screenshot_path() -> Path | None:
    """Where `make screenshot` wants the README's picture (SCREENSHOT=<path>)."""
    value = os.environ.get("SCREENSHOT")
    return Path(value) if value else None
