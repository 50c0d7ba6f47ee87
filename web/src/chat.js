// The chat page: asks for the API key once, then sends messages to the gateway's
// POST /chat and shows the session's conversation (reloaded from its history).
// Every element is built with textContent (no HTML from data), so nothing the
// service or the user writes can run as script.

import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import { startTelemetry } from "./telemetry.js";

// Per tab, and gone when the tab closes: never localStorage, never a URL.
const KEY_ITEM = "otel-chat-demo.api-key";
const SESSION_ITEM = "otel-chat-demo.session-id";

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const apiKey = () => store.getItem(KEY_ITEM);

/** @type {{trace_link_template: string, demo_api_key: string | null}} */
let config;
/** @type {import("@opentelemetry/api").Tracer} */
let tracer;

async function main() {
  config = await (await fetch("/page-config")).json();
  if (apiKey()) {
    startChat();
    return;
  }
  const form = $("key-form");
  $("api-key").value = config.demo_api_key ?? "";
  form.hidden = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    store.setItem(KEY_ITEM, $("api-key").value.trim());
    form.hidden = true;
    startChat();
  });
}

function startChat() {
  // Tracing starts once there is a key to send spans with (the relay needs one),
  // and before any listener or fetch it should see.
  tracer = startTelemetry(apiKey);
  $("chat").hidden = false;
  $("new-session").hidden = false;
  $("forget-key").hidden = false;
  $("send").addEventListener("click", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("send").click(); // a real click event: traced like one
    }
  });
  $("new-session").addEventListener("click", () => {
    store.removeItem(SESSION_ITEM);
    showSession(null);
    $("conversation").replaceChildren();
  });
  $("forget-key").addEventListener("click", () => {
    store.clear();
    window.location.reload();
  });
  showSession(store.getItem(SESSION_ITEM));
  loadHistory();
}

// The most turns one history page holds (the gateway's documented maximum).
const HISTORY_PAGE = 100;

async function loadHistory() {
  const sessionId = store.getItem(SESSION_ITEM);
  if (!sessionId) return;
  // A page at a time, oldest first, following each page's cursor to the newest.
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (cursor) query.set("cursor", cursor);
    const response = await fetch(`/chat/${sessionId}/history?${query}`, {
      headers: authHeaders(),
    });
    if (response.status === 404) {
      // Expired, evicted by newer sessions of this key, or another key's: start afresh.
      store.removeItem(SESSION_ITEM);
      showSession(null);
      $("conversation").replaceChildren();
      return;
    }
    if (!response.ok) {
      showProblem(await response.json().catch(() => ({})), response);
      return;
    }
    const page = await response.json();
    if (!cursor && page.trimmed) {
      addTurn("notice", `${page.trimmed} earlier turns are no longer kept.`);
    }
    for (const turn of page.turns) {
      addTurn("user", turn.message);
      addReply({ ...turn, history_saved: true, degraded: false });
    }
    cursor = page.next_cursor;
  } while (cursor);
}

/** The send button's click: the root span of this message's trace. */
function send() {
  const input = $("message");
  const message = input.value.trim();
  if (!message) return;
  const sessionId = store.getItem(SESSION_ITEM);
  // A span of the page's own, from the click to the reply on screen; the click's
  // span (user-interaction) ends when this listener returns, the fetch span and
  // with it the gateway's spans are this one's children.
  const span = tracer.startSpan("chat.send", {
    attributes: { "chat.message.length": message.length, "chat.session.new": !sessionId },
  });
  addTurn("user", message);
  input.value = "";
  setBusy(true);
  const body = JSON.stringify(sessionId ? { message, session_id: sessionId } : { message });
  const request = context.with(trace.setSpan(context.active(), span), () =>
    fetch("/chat", {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/json" },
      body,
    }),
  );
  request
    .then(async (response) => {
      const payload = await response.json().catch(() => ({}));
      span.setAttribute("http.response.status_code", response.status);
      if (!response.ok) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: payload.detail ?? "" });
        showProblem(payload, response);
        return;
      }
      span.setAttributes({
        "chat.reply.cached": payload.cached,
        "chat.reply.degraded": payload.degraded,
        "chat.history_saved": payload.history_saved,
      });
      if (payload.history_saved) {
        store.setItem(SESSION_ITEM, payload.session_id);
        showSession(payload.session_id);
      }
      addReply(payload);
    })
    .catch((error) => {
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
      $("status").textContent = `The gateway did not answer: ${error}`;
    })
    .finally(() => {
      setBusy(false);
      span.end();
    });
}

function authHeaders() {
  return { "X-API-Key": apiKey() ?? "" };
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("status").textContent = busy ? "thinking…" : "";
  if (!busy) $("message").focus();
}

function showSession(sessionId) {
  $("session-id").textContent = sessionId ?? "none yet";
}

function addTurn(kind, text) {
  const item = document.createElement("li");
  item.className = `turn ${kind}`;
  item.textContent = text;
  $("conversation").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

/** A reply, with what happened to it: cached, degraded, not saved; its trace. */
function addReply(reply) {
  const item = addTurn("assistant", reply.reply);
  const meta = document.createElement("div");
  meta.className = "meta";
  if (reply.cached) meta.append(badge("cached", "cached", "The same message was answered before"));
  if (reply.degraded) {
    meta.append(badge("degraded", "degraded", "Made without the cache: it failed"));
  }
  if (!reply.history_saved) {
    meta.append(badge("not saved", "unsaved", "This turn is not in the session's history"));
  }
  if (reply.history_trimmed) {
    const dropped = `The history keeps its newest turns: ${reply.history_trimmed} older ones dropped`;
    meta.append(badge("history full", "trimmed", dropped));
  }
  if (reply.trace_id) meta.append(traceLink(reply.trace_id));
  item.append(meta);
}

function showProblem(problem, response) {
  const item = addTurn("error", `${response.status}: ${problem.detail ?? response.statusText}`);
  const traceId = problem.trace_id ?? response.headers.get("X-Trace-Id");
  if (traceId) {
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.append(traceLink(traceId));
    item.append(meta);
  }
}

function badge(text, kind, title) {
  const element = document.createElement("span");
  element.className = `badge ${kind}`;
  element.textContent = text;
  element.title = title;
  return element;
}

function traceLink(traceId) {
  const link = document.createElement("a");
  link.className = "trace";
  link.href = config.trace_link_template.replaceAll("{trace_id}", traceId);
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.textContent = `trace ${traceId}`;
  link.title = "Open this reply's trace";
  return link;
}

main();
