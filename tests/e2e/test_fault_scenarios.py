"""`make fault` scenarios on the native stack: each one, under steady traffic, makes
its alert's expression true on real data (and false again after fault-clear), and
shows in the traces at the hop it names.

A stack of its own (the scenarios break things the other end-to-end tests count
on), exporting metrics every second. Alert expressions are read from alerts.yml
and evaluated with their rate windows shortened from minutes to seconds: the same
logic, at a pace a test can wait for.
"""

import itertools
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.gateway.settings import DEMO_API_KEY
from stack.backends import Backends
from stack.faults import SCENARIOS, NativeTarget, Scenario, apply, clear
from stack.native import REPO, NativeStack, Ports, native_stack
from stack.processes import wait_until
from traces.otlp_json import SERVER, StoredSpan, flatten, missing_parts

ALERTS = REPO / "deploy/prometheus/rules/alerts.yml"
WINDOW = "20s"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    run_dir: Path = tmp_path_factory.mktemp("fault-stack")
    fast = {
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000",  # steady traffic, never 429
    }
    with native_stack(run_dir, Ports.free(), service_env=fast) as running:
        yield running


@dataclass
class Traffic:
    """Chats sent by a few threads until stopped: new messages and repeats, in sessions."""

    gateway: str
    responses: list[httpx.Response] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, worker: int) -> None:
        session: str | None = None
        with httpx.Client(
            base_url=self.gateway, headers={"X-API-Key": DEMO_API_KEY}, timeout=10
        ) as client:
            for n in itertools.count():
                if self.stop.wait(0.05):  # a steady pace, about 20 chats a second at most
                    return
                # Every third message is a repeat (a cache hit when the cache works).
                message = "hello again" if n % 3 == 0 else f"hello {worker} {uuid.uuid4().hex}"
                body: dict[str, Any] = {"message": message}
                if session:
                    body["session_id"] = session
                response = client.post("/chat", json=body)
                self.responses.append(response)
                if response.status_code == 200 and response.json()["history_saved"]:
                    session = response.json()["session_id"]
                else:
                    session = None


@pytest.fixture
def traffic(stack: NativeStack) -> Iterator[Traffic]:
    traffic = Traffic(f"http://127.0.0.1:{stack.ports.entry}")
    threads = [threading.Thread(target=traffic.run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        yield traffic
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(timeout=15)


def alert_expression(name: str) -> str:
    """The alert's expression from alerts.yml, rate windows shortened to WINDOW."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == name)
    return re.sub(r"\[\d+m\]", f"[{WINDOW}]", rule["expr"])


def firing(backends: Backends, scenario: Scenario) -> bool:
    """The expression has a result carrying the scenario's labels."""
    results = backends.promql(alert_expression(scenario.alert))
    wanted = scenario.alert_labels.items()
    return any(wanted <= result["metric"].items() for result in results)


def trace_of(backends: Backends, response: httpx.Response) -> list[StoredSpan]:
    trace_id = response.headers["x-trace-id"]

    def stored() -> list[StoredSpan] | None:
        # The whole trace (traces.otlp_json.missing_parts): the gateway's spans alone
        # can arrive before the chat's that a scenario looks for.
        spans = flatten(backends.trace(trace_id))
        return spans if not missing_parts(spans) else None

    try:
        return wait_until(stored, timeout=30, what=f"trace {trace_id}")
    except TimeoutError as exc:
        spans = flatten(backends.trace(trace_id))
        seen = [(s.service, s.name) for s in spans]
        missing = missing_parts(spans)
        raise AssertionError(f"trace {trace_id}: missing {missing}, got {seen}") from exc


def check_failing_hop(backends: Backends, scenario: Scenario, traffic: Traffic) -> None:
    """The hop the scenario names shows it in a trace sent while it was in force."""
    recent = list(traffic.responses[-20:])
    if scenario.name == "slow-redis":
        spans = trace_of(backends, recent[-1])
        injected = [s for s in spans if s.name == "fault.injected" and s.service == "cache"]
        # 700 ms, give or take the event loop's timer resolution.
        assert injected and all(s.end_ns - s.start_ns >= 690_000_000 for s in injected)
    elif scenario.name == "chat-errors":
        failed = next(r for r in reversed(recent) if r.status_code == 502)
        assert failed.json()["detail"] == "chat: failed (500)."
        spans = trace_of(backends, failed)
        chat = next(s for s in spans if s.service == "chat" and s.kind == SERVER)
        assert chat.status_code == 2
        assert "exception" in chat.event_names
    elif scenario.name == "cache-down":
        degraded = recent[-1]
        assert degraded.status_code == 200
        assert (degraded.json()["degraded"], degraded.json()["history_saved"]) == (True, False)
        spans = trace_of(backends, degraded)
        cache = [s for s in spans if s.service == "cache" and s.kind == SERVER]
        assert cache and all(s.status_code == 2 for s in cache)
    else:  # collector-down: the services keep serving; nothing is traced meanwhile
        assert all(r.status_code == 200 for r in recent)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_fires_its_alert_and_shows_its_failing_hop(
    stack: NativeStack, traffic: Traffic, name: str
) -> None:
    scenario = SCENARIOS[name]
    backends = Backends(stack.ports)
    target = NativeTarget(stack)
    assert not firing(backends, scenario), "firing before the fault"
    apply(target, scenario)
    try:
        wait_until(
            lambda: firing(backends, scenario) or None,
            timeout=90,
            interval=1,
            what=f"{scenario.alert} true during {name}",
        )
        check_failing_hop(backends, scenario, traffic)
    finally:
        clear(target)
    wait_until(
        lambda: not firing(backends, scenario) or None,
        timeout=90,
        interval=1,
        what=f"{scenario.alert} false after fault-clear",
    )
