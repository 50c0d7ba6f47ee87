"""The load generator's rules and ``make load``'s command lines (no Locust imported:
it would patch this process with gevent; tests/e2e/test_load.py runs it for real)."""

import json
import random
import re
from dataclasses import dataclass

import pytest

from experiments.load import docker_command, locust_options, native_command
from experiments.loadtest.rules import (
    COMMON_MESSAGES,
    LOAD_TEST_API_KEYS,
    Budget,
    max_requests_per_minute_per_key,
    message,
    slo_violations,
    summary,
)
from services.gateway.settings import GatewaySettings
from stack.native import REPO, Ports


def _make_default(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


def _locustfile_default(option: str) -> float:
    text = (REPO / "experiments/loadtest/locustfile.py").read_text()
    match = re.search(rf'"--{option}",\s*type=float,\s*default=([\d.]+)', text)
    assert match, option
    return float(match.group(1))


def test_the_load_test_keys_are_the_gateways() -> None:
    keys = json.loads((REPO / "deploy/gateway/demo-secrets/api-keys.json").read_text())
    assert set(LOAD_TEST_API_KEYS) <= set(keys)
    # One client id each: each key is a rate-limit budget of its own.
    assert len({keys[key] for key in LOAD_TEST_API_KEYS}) == len(LOAD_TEST_API_KEYS)


def test_make_loads_defaults_stay_under_the_gateways_limits() -> None:
    gateway = GatewaySettings(api_keys={"k": "c"})
    worst = max_requests_per_minute_per_key(
        int(_make_default("USERS")), len(LOAD_TEST_API_KEYS), _locustfile_default("think-min")
    )
    assert worst < gateway.rate_limit_per_minute
    assert _locustfile_default("rate-limit-per-minute") == gateway.rate_limit_per_minute
    assert _locustfile_default("no-key-per-minute") < gateway.auth_failures_per_minute


def test_users_per_key_round_up() -> None:
    assert max_requests_per_minute_per_key(5, 4, 1.0) == 120  # two users share a key
    assert max_requests_per_minute_per_key(4, 4, 2.0) == 30


def test_budget_allows_a_short_burst_then_its_rate() -> None:
    now = [0.0]
    budget = Budget(12, clock=lambda: now[0])  # one every 5 s, bursts of 2
    assert [budget.take() for _ in range(3)] == [True, True, False]
    now[0] += 4.9
    assert not budget.take()
    now[0] += 0.2
    assert budget.take()
    now[0] += 3600  # an idle hour refills the burst only
    assert [budget.take() for _ in range(3)] == [True, True, False]


def test_a_zero_budget_never_allows() -> None:
    assert not Budget(0).take()


def test_messages_mix_repeats_and_new_ones() -> None:
    rng = random.Random(7)
    messages = [message(rng) for _ in range(200)]
    repeated = [m for m in messages if m in COMMON_MESSAGES]
    assert 60 < len(repeated) < 140
    new = [m for m in messages if m not in COMMON_MESSAGES]
    assert len(set(new)) == len(new)  # each new one is a cache miss


@dataclass
class Entry:
    """The part of Locust's StatsEntry that the report reads."""

    name: str
    method: str | None
    num_requests: int
    num_failures: int
    p95: int = 100
    total_rps: float = 10.0

    @property
    def fail_ratio(self) -> float:
        return self.num_failures / self.num_requests if self.num_requests else 0.0

    def get_response_time_percentile(self, percent: float) -> int:
        return int(self.p95 * percent / 0.95)


@pytest.mark.parametrize(
    ("total", "broken"),
    [
        (Entry("Aggregated", None, 1000, 10, p95=999), []),
        (Entry("Aggregated", None, 1000, 11), ["failure ratio 0.011 > 0.01"]),
        (Entry("Aggregated", None, 1000, 0, p95=1001), ["p95 1001 ms > 1000 ms"]),
        (Entry("Aggregated", None, 0, 0), ["no request was sent"]),
    ],
)
def test_slo_check(total: Entry, broken: list[str]) -> None:
    assert slo_violations(total, max_failure_ratio=0.01, max_p95_ms=1000) == broken


def test_summary_has_a_line_per_endpoint_then_the_total() -> None:
    entries = [Entry("/chat/{session_id}/history", "GET", 5, 0), Entry("/chat", "POST", 20, 1)]
    lines = summary(entries, Entry("Aggregated", None, 25, 1)).splitlines()
    assert lines[0].split() == [
        "endpoint",
        "requests",
        "failures",
        "req/s",
        "p50",
        "ms",
        "p95",
        "ms",
        "p99",
        "ms",
    ]
    assert lines[1].split()[:4] == ["POST", "/chat", "20", "1"]
    assert lines[2].split()[:4] == ["GET", "/chat/{session_id}/history", "5", "0"]
    assert lines[3].split()[:3] == ["Aggregated", "25", "1"]


def test_native_load_targets_the_stacks_gateway_and_collector() -> None:
    ports = Ports.free()
    command, env = native_command(ports, {})
    assert command[-len(locust_options("x")) :][:2] == ["-f", "experiments/loadtest/locustfile.py"]
    assert "--otel" in command and "--headless" in command
    assert env["LOCUST_HOST"] == f"http://127.0.0.1:{ports.entry}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{ports.otlp_http}"
    assert env["OTEL_SERVICE_NAME"] == "loadgen"
    # HOST=... wins.
    _, env = native_command(ports, {"LOCUST_HOST": "http://elsewhere:8000"})
    assert env["LOCUST_HOST"] == "http://elsewhere:8000"


def test_docker_load_runs_the_compose_service_with_the_make_variables() -> None:
    command = docker_command({"LOCUST_USERS": "7", "PATH": "/bin"}, 1000, 1000)
    assert command[:5] == ["docker", "compose", "--profile", "load", "run"]
    assert command[command.index("LOCUST_USERS") - 1 :][:2] == ["--env", "LOCUST_USERS"]
    assert "PATH" not in command
    assert command[command.index("loadgen") + 1 :] == [
        "python",
        "-m",
        "locust",
        *locust_options("/reports"),
    ]
