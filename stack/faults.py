"""``make fault SCENARIO=...`` / ``make fault-clear``: break the running stack on
purpose, in a few named ways, and watch the telemetry tell it.

Each scenario names the alert that should fire, the dashboard panel that moves
and the hop whose span turns red (docs/operate/failures.md, "Break it and watch
it", walks through each). Faults are set through each service's ``/admin/faults``
(services/common/faults.py), on its admin listener (services/common/admin.py:
a port of its own on 127.0.0.1, never the service's), or by stopping a process,
and work against the native stack (``make dev``) and the Docker stack
(``make up``) alike.

A fault plan belongs to one process, so a service that runs several times
(``CHAT_REPLICAS=3 make dev``, ``docker compose up --scale chat=3``) gets the plan
in every replica: a scenario breaks the service, not one replica of it.
"""

import json
import subprocess
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services import registry
from stack.native import DEMO_ADMIN_KEY, NativeStack

COLLECTOR = "otel-collector"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    # service -> its fault plan (the body of PUT /admin/faults)
    plans: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # A component stopped for the scenario (and started again by fault-clear).
    stops: str | None = None
    # What shows it: an alert of deploy/prometheus/rules/alerts.yml and the labels
    # it fires with, a dashboard panel, the hop whose spans turn red (or slow).
    alert: str = ""
    alert_labels: Mapping[str, str] = field(default_factory=dict)
    panel: str = ""
    failing_hop: str = ""


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "slow-redis",
            "every Redis command of the cache service takes 700 ms longer",
            plans={"cache": {"redis": {"latency_ms": 700}}},
            alert="HighLatencyP95",
            alert_labels={"service_name": "gateway"},
            panel="Services overview → Latency p50 / p95 / p99",
            failing_hop="cache (fault.injected spans of 700 ms before each Redis call)",
        ),
        Scenario(
            "chat-errors",
            "half of the chat service's requests fail with an unexpected exception",
            plans={"chat": {"self": {"error_rate": 0.5}}},
            alert="HighErrorRate",
            alert_labels={"service_name": "chat"},
            panel="Services overview → Error ratio (5xx)",
            failing_hop="chat (server span ERROR, exception InjectedFaultError)",
        ),
        Scenario(
            "cache-down",
            "the cache service answers every request with 503",
            plans={"cache": {"self": {"error_rate": 1.0, "status": 503}}},
            alert="RepliesDegraded",
            alert_labels={"chat_degraded_reason": "cache_unavailable"},
            panel="Services overview → Degraded replies (chat)",
            failing_hop="cache (server span ERROR); chat answers degraded, nothing saved",
        ),
        Scenario(
            "collector-down",
            "the OpenTelemetry Collector is stopped",
            stops=COLLECTOR,
            alert="OtelCollectorDown",
            panel="Collector → the whole dashboard goes blank",
            failing_hop="none: while it is down, no trace arrives at all",
        ),
    )
}


class Target:
    """Where faults are set: the native stack's processes, or Docker's containers."""

    def set_plan(self, service: str, plan: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def stop(self, component: str) -> None:
        raise NotImplementedError

    def start(self, component: str) -> None:
        raise NotImplementedError


@dataclass
class NativeTarget(Target):
    stack: NativeStack

    def set_plan(self, service: str, plan: Mapping[str, Any]) -> None:
        for port in self.stack.ports.admin_of(service):  # every replica's admin listener
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/admin/faults",
                data=json.dumps(plan).encode(),
                method="PUT",
                headers={"Content-Type": "application/json", "X-Admin-Key": DEMO_ADMIN_KEY},
            )
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                pass

    def stop(self, component: str) -> None:
        self.stack.stop_component(component)

    def start(self, component: str) -> None:
        if component not in {r.name for r in self.stack.running}:
            self.stack.restart_component(component)


class DockerTarget(Target):
    """The compose stack: admin calls from inside each container (the admin
    listener binds the container's 127.0.0.1, and nothing publishes it), with the
    admin key and port that container has: its ``<SERVICE>_ADMIN_PORT``, else the
    service's admin port in services/registry.py, as the service itself reads them.

    Every container of the service: ``docker compose exec SERVICE`` runs in one
    container only, the first replica (``--index 1``, its default), so under
    ``--scale chat=3`` it would break one chat in three. The containers are listed
    with ``docker compose ps --quiet SERVICE`` (the running ones) and each is
    reached by id with ``docker exec``: no assumption that the replicas' indexes
    run 1..N without gaps after scaling down and up.
    """

    def set_plan(self, service: str, plan: Mapping[str, Any]) -> None:
        prefix = service.upper()
        port = f"os.environ.get('{prefix}_ADMIN_PORT', '{registry.by_name(service).admin_port}')"
        call = (
            "import os, urllib.request as u; "
            f"u.urlopen(u.Request('http://127.0.0.1:%s/admin/faults' % {port}, "
            f"data={json.dumps(plan).encode()!r}, method='PUT', headers={{"
            "'Content-Type': 'application/json', "
            f"'X-Admin-Key': os.environ['{prefix}_ADMIN_KEY']}}), timeout=5)"
        )
        containers = _compose_output("ps", "--quiet", service).split()
        if not containers:
            raise RuntimeError(f"no running container of {service} (make up first)")
        for container in containers:
            subprocess.run(["docker", "exec", container, "python", "-c", call], check=True)  # noqa: S607

    def stop(self, component: str) -> None:
        _compose("stop", component)

    def start(self, component: str) -> None:
        _compose("start", component)


def _compose(*args: str) -> None:
    subprocess.run(["docker", "compose", *args], check=True)  # noqa: S607 (docker from PATH)


def _compose_output(*args: str) -> str:
    command = ["docker", "compose", *args]  # docker from PATH
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def apply(target: Target, scenario: Scenario) -> None:
    """Clear whatever was set before, then break things as ``scenario`` says."""
    clear(target)
    for service, plan in scenario.plans.items():
        target.set_plan(service, plan)
    if scenario.stops:
        target.stop(scenario.stops)


def clear(target: Target) -> None:
    """No fault anywhere, and every stopped component running again."""
    for scenario in SCENARIOS.values():
        if scenario.stops:
            target.start(scenario.stops)
    for service in registry.names():
        target.set_plan(service, {})


def describe(scenario: Scenario) -> str:
    alert = scenario.alert + "".join(f" {k}={v}" for k, v in scenario.alert_labels.items())
    return (
        f"{scenario.name}: {scenario.what}\n"
        f"  watch:  {scenario.panel}\n"
        f"  alert:  {alert} (pending at once, firing after its `for:`; Prometheus /alerts)\n"
        f"  traces: {scenario.failing_hop}\n"
        "  undo:   make fault-clear"
    )
