"""The chat page in a real browser: a message, its reply and trace, the trace in
the store from the browser's click down to Redis, the conversation after a reload,
its telemetry free of secrets, and nothing loaded from anywhere else."""

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.gateway.browser_spans import page_spans, parse_export
from services.gateway.settings import DEMO_API_KEY
from stack.backends import Backends
from stack.native import DEMO_ADMIN_KEY, NativeStack
from stack.processes import wait_until
from tests.browser.conftest import Visit, screenshot_path
from traces.otlp_json import CLIENT, SERVER, StoredSpan, flatten, missing_parts

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def open_chat(visit: Visit) -> Page:
    """Load the page and give it the (prefilled) demo key."""
    page = visit.page
    page.goto(f"{visit.origin}/")
    key = page.get_by_label("API key")
    expect(key).to_have_value(DEMO_API_KEY)
    expect(key).to_have_attribute("type", "password")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#chat")).to_be_visible()
    return page


def send(page: Page, message: str) -> str:
    """Send ``message`` with the send button; the trace id its reply shows."""
    replies = page.locator(".turn.assistant")
    before = replies.count()
    page.locator("#message").fill(message)
    page.get_by_role("button", name="Send").click()
    expect(replies).to_have_count(before + 1, timeout=15_000)
    link = replies.last.locator("a.trace")
    trace_id = (link.text_content() or "").removeprefix("trace ")
    assert TRACE_ID.match(trace_id), trace_id
    return trace_id


def complete_trace(backends: Backends, trace_id: str) -> list[StoredSpan]:
    """The trace once the browser's spans and every service's (Redis's too) are in, and
    every span's parent with them (the processes export in batches of their own)."""

    def probe() -> list[StoredSpan] | None:
        spans = flatten(backends.trace(trace_id))
        services = {s.service for s in spans}
        has_redis = any(s.is_redis and s.service == "cache" for s in spans)
        has_click = any(s.service == "chat-web" and s.name == "click" for s in spans)
        complete = {"chat-web", "gateway", "chat", "cache"} <= services
        whole = not missing_parts(spans)  # every span's parent, every call's callee
        return spans if complete and has_redis and has_click and whole else None

    return wait_until(probe, timeout=60, what=f"trace {trace_id} from the browser to Redis")


def test_a_message_gets_a_reply_with_its_trace_link(visit: Visit, stack: NativeStack) -> None:
    page = open_chat(visit)
    trace_id = send(page, "hello, what is a trace?")

    reply = page.locator(".turn.assistant").last
    expect(reply).to_contain_text("trace")
    jaeger = f"http://127.0.0.1:{stack.ports.jaeger_query}/api/v3/traces/{trace_id}"
    expect(reply.locator("a.trace")).to_have_attribute("href", jaeger)
    expect(reply.locator(".badge")).to_have_count(0)  # saved, not cached, not degraded
    expect(page.locator("#session-id")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    # The key lives in this tab's session storage, and in no URL.
    assert page.evaluate("sessionStorage.getItem('otel-chat-demo.api-key')") == DEMO_API_KEY
    assert page.url == f"{visit.origin}/"
    assert not [r for r in visit.requests if DEMO_API_KEY in r]
    assert visit.elsewhere() == []
    assert visit.console_errors == []


def test_the_trace_starts_in_the_browser_and_reaches_redis(
    visit: Visit, backends: Backends
) -> None:
    page = open_chat(visit)
    trace_id = send(page, "how do spans become a trace?")
    spans = complete_trace(backends, trace_id)
    by_id = {span.span_id: span for span in spans}

    def ancestors(span: StoredSpan) -> list[StoredSpan]:
        chain = []
        while span.parent_span_id:
            span = by_id[span.parent_span_id]
            chain.append(span)
        return chain

    roots = [s for s in spans if not s.parent_span_id]
    assert [(r.service, r.name) for r in roots] == [("chat-web", "click")]
    assert roots[0].attributes["target_element"] == "BUTTON"
    [server] = [s for s in spans if s.service == "gateway" and s.kind == SERVER]
    assert server.name == "POST /chat"
    # click -> chat.send -> the fetch's client span -> the gateway's server span.
    path = [(s.service, s.name if s.kind != CLIENT else "CLIENT") for s in ancestors(server)]
    assert path == [("chat-web", "CLIENT"), ("chat-web", "chat.send"), ("chat-web", "click")]
    # ... and on, down to the cache's Redis commands.
    redis = [s for s in spans if s.is_redis and s.service == "cache"]
    assert all(roots[0] in ancestors(s) for s in redis)
    # The page's resource, with the client id the gateway vouches for.
    web = next(s for s in spans if s.service == "chat-web")
    assert web.resource["service.namespace"] == "otel-chat-demo"
    assert web.resource["client.id"] == "demo-client"


def test_a_reload_shows_the_conversation_again(visit: Visit) -> None:
    page = open_chat(visit)
    messages = ["hello there", "what are metrics?", "hello there"]
    trace_ids = [send(page, message) for message in messages]
    expect(page.locator(".turn.assistant").last.locator(".badge.cached")).to_have_count(1)

    page.reload()
    # No key asked again (this tab's session storage has it); the history is back.
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator(".turn.user")).to_have_text(messages)
    expect(page.locator(".turn.assistant a.trace")).to_have_text(
        [f"trace {trace_id}" for trace_id in trace_ids]
    )
    assert visit.console_errors == []


def test_a_history_over_its_cap_shows_its_newest_turns_and_says_so(
    visit: Visit, gateway: str
) -> None:
    # More turns than a history keeps (CHAT_MAX_TURNS_PER_SESSION, 100), sent by the API.
    session_id = ""
    with httpx.Client(base_url=gateway, headers={"X-API-Key": DEMO_API_KEY}) as api:
        for n in range(103):
            body = {"message": f"turn {n}"} | ({"session_id": session_id} if session_id else {})
            answer = api.post("/chat", json=body, timeout=10).json()
            session_id = answer["session_id"]
    assert answer["history_trimmed"] == 3
    page = open_chat(visit)
    page.evaluate(f"sessionStorage.setItem('otel-chat-demo.session-id', '{session_id}')")
    page.reload()
    expect(page.locator(".turn.notice")).to_have_text("3 earlier turns are no longer kept.")
    turns = page.locator(".turn.user")
    expect(turns).to_have_count(100)
    expect(turns.first).to_have_text("turn 3")
    expect(turns.last).to_have_text("turn 102")
    # The next reply is saved and says the history is full.
    send(page, "one more")
    badge = page.locator(".turn.assistant").last.locator(".badge.trimmed")
    expect(badge).to_have_text("history full")
    assert visit.console_errors == []


@contextmanager
def cache_unreachable_from_chat(stack: NativeStack) -> Iterator[None]:
    """Every call of the chat service to the cache fails (a fault, for the block)."""
    faults = f"http://127.0.0.1:{stack.ports.admin_of('chat')[0]}/admin/faults"
    headers = {"X-Admin-Key": DEMO_ADMIN_KEY}
    httpx.put(faults, json={"cache": {"error_rate": 1.0}}, headers=headers).raise_for_status()
    try:
        yield
    finally:
        httpx.delete(faults, headers=headers).raise_for_status()


def test_a_degraded_reply_says_it_was_not_saved(visit: Visit, stack: NativeStack) -> None:
    page = open_chat(visit)
    with cache_unreachable_from_chat(stack):
        send(page, "is anyone keeping notes?")
    reply = page.locator(".turn.assistant").last
    expect(reply.locator(".badge")).to_have_text(["degraded", "not saved"])
    # A turn that was not saved starts no session.
    expect(page.locator("#session-id")).to_have_text("none yet")


def test_the_page_telemetry_carries_no_secret(visit: Visit, backends: Backends) -> None:
    page = open_chat(visit)
    trace_id = send(page, "a secret-free message")
    complete_trace(backends, trace_id)  # so the page has exported its spans
    page.evaluate("0")  # (Playwright hands over the page's events on a call like this)
    assert any(trace_id in body for body in visit.otlp_bodies)
    assert all(DEMO_API_KEY not in body for body in visit.otlp_bodies)
    stored = json.dumps(backends.trace(trace_id))
    assert DEMO_API_KEY not in stored
    assert "X-API-Key" not in stored and "x-api-key" not in stored


# What the relay drops from the page's own spans, on purpose (services/gateway/browser_spans.py).
DROPPED_ON_PURPOSE = {"server.address", "server.port"}


def test_the_relay_policy_keeps_what_the_page_really_sends(
    visit: Visit, backends: Backends
) -> None:
    """The relay's allow-lists against the page's real exports: every span the page
    made (document load, the click, chat.send, the fetches) keeps its name, kind,
    attributes and events."""
    page = open_chat(visit)
    complete_trace(backends, send(page, "a message for the policy"))
    page.evaluate("0")  # (Playwright hands over the page's events on a call like this)
    assert visit.otlp_bodies
    names: set[str] = set()
    for body in visit.otlp_bodies:
        export = parse_export(body.encode())
        relayed = page_spans(export, "demo-client")
        kept = {
            s.span_id: s for scope in relayed.resource_spans[0].scope_spans for s in scope.spans
        }
        for resource_spans in export.resource_spans:
            for scope in resource_spans.scope_spans:
                for sent in scope.spans:
                    after = kept[sent.span_id]
                    names.add(after.name)
                    assert (after.name, after.kind) == (sent.name, sent.kind)
                    want = {a.key for a in sent.attributes} - DROPPED_ON_PURPOSE
                    assert {a.key for a in after.attributes} == want, sent.name
                    assert [e.name for e in after.events] == [e.name for e in sent.events]
    assert {"documentLoad", "click", "chat.send", "POST"} <= names


def test_the_page_load_is_traced(visit: Visit, backends: Backends) -> None:
    open_chat(visit)

    def document_loads() -> list[StoredSpan] | None:
        spans = [s for s in flatten(backends.traces_of("chat-web")) if s.name == "documentLoad"]
        return spans or None

    [load, *_] = wait_until(document_loads, timeout=30, what="a documentLoad span in Jaeger")
    assert load.attributes["url.full"].startswith(visit.origin)


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_pages_load_nothing_from_elsewhere_and_break_no_policy(visit: Visit, path: str) -> None:
    response = visit.page.goto(f"{visit.origin}{path}")
    assert response is not None
    assert "default-src 'self'" in response.headers["content-security-policy"]
    if path == "/docs":
        # Swagger UI ran (its script, its styles) and read the gateway's document.
        expect(visit.page.locator(".opblock-summary-path").first).to_be_visible()
        expect(visit.page.get_by_text("/chat/{session_id}/history")).to_be_visible()
    else:
        expect(visit.page.get_by_role("button", name="Start")).to_be_visible()
    assert visit.elsewhere() == []
    # A blocked script or style is reported on the console.
    assert visit.console_errors == []


def test_screenshot_of_a_few_turns(visit: Visit, stack: NativeStack, tmp_path: Path) -> None:
    """The README's picture (`make screenshot` writes it): a session of a few turns."""
    page = open_chat(visit)
    for message in ("hello, what is a trace?", "and what are metrics?", "hello, what is a trace?"):
        send(page, message)
    with cache_unreachable_from_chat(stack):
        send(page, "and where do the logs go?")
    target = screenshot_path() or tmp_path / "chat-page.png"
    page.screenshot(path=target, full_page=True)
    assert target.read_bytes().startswith(b"\x89PNG")
