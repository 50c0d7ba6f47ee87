"""Metrics and logs of a chat request: the names dashboards use, and trace links."""

from opentelemetry.trace import format_span_id, format_trace_id

from tests.services.conftest import Chain


async def test_every_service_records_its_metrics(chain: Chain) -> None:
    await chain.chat("hello")
    await chain.chat("hello")
    expected = {
        "gateway": {
            "http.server.request.duration",
            "http.client.request.duration",
            "chat.requests",
        },
        "chat": {
            "http.server.request.duration",
            "http.client.request.duration",
            "chat.replies",
            "chat.reply.duration",
        },
        "cache": {"http.server.request.duration", "cache.lookups"},
    }
    for service, names in expected.items():
        assert names <= chain.metric_points(service).keys(), service

    replies = chain.metric_points("chat")["chat.replies"]
    assert {(dict(p.attributes)["cache.hit"], p.value) for p in replies} == {(False, 1), (True, 1)}
    lookups = chain.metric_points("cache")["cache.lookups"]
    assert {(dict(p.attributes)["cache.result"], p.value) for p in lookups} == {
        ("miss", 1),
        ("hit", 1),
    }
    requests = chain.metric_points("gateway")["chat.requests"]
    assert [(dict(p.attributes), p.value) for p in requests] == [({"chat.outcome": "ok"}, 2)]


async def test_histograms_carry_exemplars_that_point_at_traces(chain: Chain) -> None:
    trace_ids = set()
    for message in ("a", "b", "a"):
        trace_ids.add((await chain.chat(message)).json()["trace_id"])
    # (The httpx instrumentation records client durations after its span has
    # ended, so http.client.request.duration has no exemplars to offer.)
    for service, name in (
        ("chat", "chat.reply.duration"),
        ("gateway", "http.server.request.duration"),
        ("cache", "http.server.request.duration"),
    ):
        exemplars = [e for p in chain.metric_points(service)[name] for e in p.exemplars]
        assert exemplars, f"{service} {name}"
        assert {format_trace_id(e.trace_id) for e in exemplars if e.trace_id} <= trace_ids
    server = chain.metric_points("gateway")["http.server.request.duration"]
    chat_route = [p for p in server if dict(p.attributes).get("http.route") == "/chat"]
    assert chat_route and dict(chat_route[0].attributes)["http.response.status_code"] == 200


async def test_each_service_exports_only_its_own_log_records(chain: Chain) -> None:
    """Three apps share this process and its root logger; each exports what its
    own code logged, as it would in a process of its own."""
    await chain.chat("hello")
    own = {
        "gateway": "chat request from client demo-client answered",
        "chat": "replied in session",
        "cache": None,
    }
    for service in own:
        bodies = [str(log.log_record.body) for log in chain.logs(service)]
        assert f"{service} service started" in bodies
        for other, message in own.items():
            if message is None:
                continue
            logged = any(body.startswith(message) for body in bodies)
            assert logged is (other == service), (service, message)


async def test_log_records_carry_the_request_trace_id(chain: Chain) -> None:
    response = await chain.chat("hello")
    trace_id = response.json()["trace_id"]
    logs = [log for log in chain.logs() if log.log_record.trace_id]
    messages = {
        log.log_record.body for log in logs if format_trace_id(log.log_record.trace_id) == trace_id
    }
    assert "chat request from client demo-client answered" in messages
    assert any(str(body).startswith("replied in session") for body in messages)
    span_ids = {format_span_id(s.context.span_id) for _, s in chain.all_spans()}
    assert all(format_span_id(log.log_record.span_id) in span_ids for log in logs)
