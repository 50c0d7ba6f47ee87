"""The rules of ``make verify-stack`` (stack.verify, stack.health) on recorded answers of
Docker, Kubernetes, Grafana and Prometheus: the parts that only a runner with Docker
(.github/workflows/stack.yml) or a cluster reaches. The checks themselves run against
the native stack in tests/e2e/test_verify_stack.py."""

import json
from pathlib import Path

import pytest
import yaml

from services import registry
from stack import health
from stack.faults import SCENARIOS
from stack.native import REPO, NativeStack, Ports, Running
from stack.verify import (
    active_alert,
    dashboard_queries,
    exemplar_trace_ids,
    grafana_problems,
)


def ps_row(
    service: str, state: str = "running", health_status: str = "healthy"
) -> dict[str, object]:
    """One line of `docker compose ps --format json` (Compose 2.21+), the fields read."""
    return {
        "Name": f"otel-chat-demo-{service}-1",
        "Service": service,
        "State": state,
        "Health": health_status,
        "ExitCode": 0 if state == "running" else 137,
        "Status": "Up 2 minutes (healthy)",
    }


def test_the_services_make_up_starts_and_which_have_a_healthcheck() -> None:
    expected = health.compose_services(yaml.safe_load(health.COMPOSE_FILE.read_text()))
    assert "loadgen" not in expected  # behind the `load` profile
    assert expected["otel-collector"] is False  # FROM scratch: probed from outside
    assert expected["otel-collector-health"] is True
    # Healthchecks from the shared <<: *app and *redis blocks count.
    assert all(expected[name] for name in (*registry.names(), *registry.REDISES))


def test_compose_ps_parses_lines_and_the_older_array() -> None:
    rows = [ps_row("gateway"), ps_row("chat")]
    lines = "\n".join(json.dumps(row) for row in rows) + "\n"
    assert health.parse_compose_ps(lines) == rows
    assert health.parse_compose_ps(json.dumps(rows)) == rows
    assert health.parse_compose_ps("") == []


def test_every_running_healthy_container_passes() -> None:
    expected = {"gateway": True, "otel-collector": False}
    rows = [ps_row("gateway"), ps_row("otel-collector", health_status="")]
    assert health.compose_problems(expected, rows) == []


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([], "gateway: no container"),
        ([ps_row("gateway", health_status="starting")], "gateway-1: running but starting"),
        ([ps_row("gateway", health_status="unhealthy")], "gateway-1: running but unhealthy"),
        ([ps_row("gateway", state="exited")], "gateway-1: exited (exit code 137)"),
        # A second replica that died counts, though the first is fine.
        ([ps_row("gateway"), {**ps_row("gateway", state="exited"), "Name": "g-2"}], "g-2: exited"),
    ],
)
def test_a_container_not_running_or_not_healthy_is_a_problem(
    rows: list[dict[str, object]], problem: str
) -> None:
    problems = health.compose_problems({"gateway": True}, rows)
    assert len(problems) == 1 and problem in problems[0], problems


def pod(
    name: str, *, phase: str = "Running", ready: str = "True", **labels: str
) -> dict[str, object]:
    return {
        "metadata": {"name": f"{name}-7d9f", "labels": labels},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
    }


def every_pod() -> list[dict[str, object]]:
    ours = [*registry.names(), *registry.REDISES, "otel-collector"]
    return [pod(n, **{"app.kubernetes.io/name": n}) for n in ours] + [
        pod(r, **{"app.kubernetes.io/instance": r}) for r in health.HELM_RELEASES
    ]


def test_every_pod_ready_passes_and_a_finished_one_is_ignored() -> None:
    finished = pod("job", phase="Succeeded", ready="False")
    assert health.pod_problems({"items": [*every_pod(), finished]}) == []


def test_a_pod_not_ready_or_missing_is_a_problem() -> None:
    pods = every_pod()
    pods[0] = pod("gateway", ready="False", **{"app.kubernetes.io/name": "gateway"})
    del pods[-1]  # grafana's
    assert health.pod_problems({"items": pods}) == [
        "pod gateway-7d9f: Running, not ready",
        "grafana: no pod",
    ]


def test_a_native_component_not_recorded_as_running_is_a_problem(tmp_path: Path) -> None:
    stack = NativeStack(tmp_path, Ports.free())  # nothing started
    problems = health.native_problems(stack)
    assert "redis: not running (`make logs` shows why)" in problems
    # Two Redis, Jaeger, VictoriaLogs, Prometheus, the Collector, and the services.
    assert len(problems) == 6 + len(registry.names())


def test_after_down_reports_recorded_processes_and_busy_ports(tmp_path: Path) -> None:
    stack = NativeStack(tmp_path, Ports.free())
    stack.running = [Running("gateway", 4242, [], "gateway.log", started=None)]
    assert health.native_leftovers(stack, stack.ports) == ["gateway (pid 4242) still runs"]
    assert health.native_leftovers(None, Ports.free()) == []


# Grafana 13's answers, trimmed to what the check reads: /api/datasources/uid/<uid>, and
# its /health (200 with status OK; 400 with status ERROR and why, when it fails).
TEMPO = {"uid": "tempo", "type": "tempo", "url": "http://tempo:3200"}
HEALTHY = {"status": "OK", "message": "Data source successfully connected."}


def test_grafana_healthy_with_every_data_source_and_dashboard() -> None:
    dashboards = {"otel-chat-services": {"dashboard": {"uid": "otel-chat-services"}}}
    assert grafana_problems({"database": "ok"}, {"tempo": (TEMPO, HEALTHY)}, dashboards) == []


def test_grafana_problems_name_what_is_wrong() -> None:
    failed = {"status": "ERROR", "message": "dial tcp: lookup tempo: no such host"}
    problems = grafana_problems(
        {"database": "failing"},
        {"tempo": (TEMPO, failed), "loki": (None, None), "prometheus": ({"uid": "p"}, None)},
        {"otel-chat-services": None},
    )
    assert problems == [
        "/api/health: {'database': 'failing'}",
        "data source loki: not provisioned",
        "data source prometheus: no health check (is its plugin loaded?)",
        "data source tempo: ERROR: dial tcp: lookup tempo: no such host",
        "dashboard otel-chat-services: not provisioned",
    ]


def test_exemplar_trace_ids_newest_first_in_full_form() -> None:
    body = {
        "data": [
            {
                "seriesLabels": {"service_name": "gateway"},
                "exemplars": [
                    {"labels": {"trace_id": "abc"}, "value": "0.1", "timestamp": 10.5},
                    {"labels": {"span_id": "1"}, "value": "0.1", "timestamp": 30.0},
                    {"labels": {"trace_id": "f" * 32}, "value": "0.2", "timestamp": 20.0},
                ],
            },
            {"exemplars": [{"labels": {"trace_id": "abc"}, "timestamp": 5.0}]},
        ]
    }
    assert exemplar_trace_ids(body) == ["f" * 32, "abc".rjust(32, "0")]


def test_an_alert_is_active_when_pending_or_firing_with_the_scenarios_labels() -> None:
    scenario = SCENARIOS["cache-down"]  # RepliesDegraded{chat_degraded_reason=cache_unavailable}
    labels = {"alertname": "RepliesDegraded", "chat_degraded_reason": "cache_unavailable"}
    assert active_alert([{"labels": labels, "state": "pending"}], scenario) == "pending"
    assert active_alert([{"labels": labels, "state": "firing"}], scenario) == "firing"
    assert active_alert([{"labels": labels, "state": "inactive"}], scenario) is None
    other = {**labels, "chat_degraded_reason": "cache_timeout"}
    assert active_alert([{"labels": other, "state": "firing"}], scenario) is None


def test_every_scenario_names_an_alert_of_the_rules() -> None:
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules/alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {s.alert for s in SCENARIOS.values()} <= alerts


def test_dashboard_queries_cover_every_dashboard_with_variables_replaced() -> None:
    queries = dashboard_queries()
    dashboards = {path.stem for path in (REPO / "deploy/grafana/dashboards").glob("*.json")}
    # The logs dashboard queries Loki only.
    assert {where.split(":")[0] for where, _ in queries} == dashboards - {"logs"}
    assert not any("$service" in expr or "$__rate_interval" in expr for _, expr in queries)
