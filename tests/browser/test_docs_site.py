"""The docs site in a real browser: built strictly, served from its own folder, with
every request to another origin blocked and recorded. Its pages load nothing from
elsewhere and draw their Mermaid diagrams with the site's own copy (mkdocs-material
would fetch one from unpkg.com if the page had none).

Needs no stack: a static server of the built folder on a free port.
"""

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect

from checks.docs import build
from stack.processes import free_port, http_ok
from tests.support.processes import running

# Pages with diagrams: the README's picture (via the home page's include) and the pipeline.
DIAGRAM_PAGES = ["", "learn/pipeline/"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, log_dir: Path) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("docs-site")
    assert build(folder), "mkdocs build --strict failed (`make check` says why)"
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    command += ["--directory", str(folder)]
    origin = f"http://127.0.0.1:{port}"
    with running("docs-site", command, ready=http_ok(f"{origin}/"), log_dir=log_dir):
        yield origin


@pytest.fixture
def visit(browser: Browser, site: str) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A page, the requests it made to other origins, and its console errors."""
    context = browser.new_context()
    page = context.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []

    def on_request(request: Request) -> None:
        if not request.url.startswith(f"{site}/") and not request.url.startswith("data:"):
            elsewhere.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    context.route(re.compile(f"^(?!{re.escape(site)}/)"), lambda r: r.abort("blockedbyclient"))
    try:
        yield page, elsewhere, errors
    finally:
        context.close()


@pytest.mark.parametrize("path", DIAGRAM_PAGES)
def test_a_page_draws_its_diagram_with_nothing_from_elsewhere(
    site: str, visit: tuple[Page, list[str], list[str]], path: str
) -> None:
    page, elsewhere, errors = visit
    page.goto(f"{site}/{path}")
    # mkdocs-material replaces each ```mermaid block with a drawn div.mermaid (its SVG
    # sits in a closed shadow root); an undrawn one stays a <pre class="mermaid">.
    expect(page.locator("div.mermaid").first).to_be_attached(timeout=15_000)
    expect(page.locator("pre.mermaid")).to_have_count(0)
    assert page.evaluate("typeof mermaid") == "object"  # the site's own copy
    assert elsewhere == [], "the site asked another origin for these"
    assert errors == []


def test_search_works_offline(site: str, visit: tuple[Page, list[str], list[str]]) -> None:
    page, elsewhere, _ = visit
    # Once the search worker has its index (search/search_index.json, from this site):
    # a query typed before that is not run again.
    page.goto(f"{site}/", wait_until="networkidle")
    # Typed key by key: the theme searches on key events (lunr, in the site's own files).
    page.locator("input.md-search__input").press_sequentially("traceparent")
    expect(page.locator(".md-search-result__item").first).to_be_visible(timeout=15_000)
    assert elsewhere == []
