#!/usr/bin/env python3
"""The files that cannot read services/registry.py agree with it.

    python checks/services.py     (make check runs it)

Everything written in Python (Makefile targets via `python3 -m services.registry`,
the native stack, the tests) reads the registry. docker-compose.yml and the Prometheus
alert rules cannot, so they name the services themselves; this fails when they
drift:

- docker-compose.yml: one service per registry entry, built from the Dockerfile
  with SERVICE=<name> and PORT=<port>, running `uvicorn <app> --port <port>`, a
  <NAME>_<DEPENDENCY>_URL pointing at each service (or Redis) it calls, started
  after the one it depends on is healthy, with its <NAME>_ADMIN_KEY (make fault)
  and its admin listener left on the container's loopback (no <NAME>_ADMIN_HOST
  elsewhere, its admin port neither published nor exposed); no other service built
  with a SERVICE argument; only the entry service's port published; and every
  other service scalable (`docker compose up --scale
  chat=3`): no fixed container_name and no published host port, either of which
  two replicas cannot share.
- docker-compose.yml's networks: every container joins exactly the networks it
  needs, derived from the registry (a service a container calls or serves has a
  network of its name holding it and its callers only; each Redis likewise; `edge`
  holds the entry service and where its users come from; `telemetry` the services
  and the Collector; `backends` the Collector and the stores), every network but
  `edge` and `backends` is internal, and no container is on the default network.
  A Redis URL names the caller as its ACL user, with <NAME>_REDIS_PASSWORD_FILE a
  secret the service mounts.
- deploy/prometheus/rules/alerts.yml: ServiceDown watches exactly the registry's
  services.

Exit status 0 when they agree, 1 otherwise. Standard library, PyYAML and the registry.
"""

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from services import registry

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
ALERTS = REPO / "deploy/prometheus/rules/alerts.yml"

# Networks that are not named after what they reach.
EDGE = "edge"  # the entry service and where its users come from; its port is published
TELEMETRY = "telemetry"  # OTLP from the services to the Collector, and its health probe
BACKENDS = "backends"  # the Collector and the stores; their ports are published too
# Docker publishes a port only through a network with a way out: every other is internal.
NOT_INTERNAL = {EDGE, BACKENDS}
# The containers that are not the registry's services, and the networks of each.
INFRASTRUCTURE = {
    "loadgen": {EDGE, TELEMETRY},  # a user of the gateway: nothing else of the chain
    "otel-collector": {TELEMETRY, BACKENDS},
    "otel-collector-health": {TELEMETRY},  # probes the Collector as its clients do
    "tempo": {BACKENDS},
    "loki": {BACKENDS},
    "prometheus": {BACKENDS},
    "grafana": {BACKENDS},
}


def compose_problems(compose: dict[str, Any]) -> list[str]:
    """Where docker-compose.yml (loaded) and the registry disagree."""
    services: dict[str, Any] = compose.get("services") or {}
    problems = []
    # Built from the Dockerfile, and part of the stack: a service under a profile (the
    # load generator, `--profile load`) is an optional tool, not one of the chain's.
    built = {
        name
        for name, service in services.items()
        if "SERVICE" in ((service.get("build") or {}).get("args") or {})
        and not service.get("profiles")
    }
    for extra in sorted(built - set(registry.names())):
        problems.append(f"{extra} is built from the Dockerfile but not in services/registry.py")
    for entry in registry.SERVICES:
        service = services.get(entry.name)
        if service is None:
            problems.append(f"{entry.name}: missing (services/registry.py lists it)")
            continue
        problems.extend(f"{entry.name}: {problem}" for problem in _service_problems(entry, service))
    return problems + network_problems(compose)


def expected_networks() -> dict[str, set[str]]:
    """Each container's networks, derived from the registry: a network per called thing
    (a service with callers, each Redis), holding it and its callers."""
    called = {callee for _, callee in registry.edges()}
    expected = {redis: {redis} for redis in registry.REDISES}
    for entry in registry.SERVICES:
        own = {entry.name} & called
        edge = {EDGE} if entry == registry.ENTRY else set()
        expected[entry.name] = {*entry.dependencies, *own, *edge, TELEMETRY}
    return {**expected, **INFRASTRUCTURE}


def network_problems(compose: dict[str, Any]) -> list[str]:
    """Where a container is on a network it must not be on, or misses one it needs."""
    services: dict[str, Any] = compose.get("services") or {}
    declared: dict[str, Any] = compose.get("networks") or {}
    expected = expected_networks()
    problems = []
    for name, service in services.items():
        networks = service.get("networks") or []
        joined = set(networks if isinstance(networks, list) else networks.keys())
        if name not in expected:
            problems.append(f"{name}: no network rule in checks/services.py")
            continue
        if not joined:
            problems.append(f"{name}: on the default network (every container names its own)")
        for extra in sorted(joined - expected[name]):
            problems.append(f"{name}: on network {extra}, which it must not be on")
        for missing in sorted(expected[name] - joined):
            problems.append(f"{name}: not on network {missing}")
    for name in sorted(expected.keys() - services.keys()):
        problems.append(f"{name}: missing (it has a network rule)")
    needed = set().union(*expected.values())
    for name in sorted(needed - declared.keys()):
        problems.append(f"network {name}: not declared")
    for name in sorted(declared.keys() - needed):
        problems.append(f"network {name}: declared, but no container needs it")
    for name, network in declared.items():
        internal = bool((network or {}).get("internal"))
        if internal == (name in NOT_INTERNAL):
            want = "not internal: it carries published ports" if internal else "internal: true"
            problems.append(f"network {name}: must be {want}")
    return problems


def _service_problems(entry: registry.Service, service: dict[str, Any]) -> list[str]:
    problems = []
    args = (service.get("build") or {}).get("args") or {}
    expected_args = {"SERVICE": entry.name, "PORT": str(entry.port)}
    for key, value in expected_args.items():
        if str(args.get(key)) != value:
            problems.append(f"build arg {key}={args.get(key)}, the registry says {value}")
    command = [str(part) for part in service.get("command") or []]
    port = command[command.index("--port") + 1] if "--port" in command[:-1] else None
    if entry.app not in command or port != str(entry.port):
        problems.append(f"command {command} does not run {entry.app} on port {entry.port}")
    environment = service.get("environment") or {}
    for dependency in entry.dependencies:
        url = str(environment.get(entry.setting(dependency), ""))
        if dependency in registry.REDISES:  # as the ACL user of its name
            expected_url = registry.redis_url_as(entry.name, f"redis://{dependency}:")
        else:
            callee = registry.by_name(dependency)
            expected_url = f"http://{callee.name}:{callee.port}"
        if not url.startswith(expected_url):
            problems.append(f"{entry.setting(dependency)}={url!r}, expected {expected_url}...")
    if entry.redis is not None:
        password_file = f"{entry.name.upper()}_REDIS_PASSWORD_FILE"
        secret = str(environment.get(password_file, "")).removeprefix("/run/secrets/")
        if secret not in (service.get("secrets") or []):
            problems.append(f"{password_file} is not a secret it mounts (/run/secrets/...)")
    admin_key = f"{entry.name.upper()}_ADMIN_KEY"  # its /admin/faults (`make fault`)
    if admin_key not in environment:
        problems.append(f"no {admin_key} (make fault cannot reach it)")
    admin_host = str(environment.get(f"{entry.name.upper()}_ADMIN_HOST", "127.0.0.1"))
    if admin_host not in {"127.0.0.1", "::1"}:
        problems.append(f"admin listener on {admin_host}: other containers would reach it")
    exposed = [
        str(port) for port in [*(service.get("ports") or []), *(service.get("expose") or [])]
    ]
    if any(port.rsplit(":", 1)[-1] == str(entry.admin_port) for port in exposed):
        problems.append(f"publishes or exposes its admin port {entry.admin_port}")
    depends_on = service.get("depends_on") or {}
    condition = (depends_on.get(entry.calls) or {}).get("condition")
    if condition != "service_healthy":
        problems.append(f"does not wait for {entry.calls} to be healthy (depends_on)")
    published = [str(port).rsplit(":", 1)[-1] for port in service.get("ports") or []]
    if entry == registry.ENTRY and published != [str(entry.port)]:
        problems.append(f"publishes {published}; the entry service publishes its port only")
    if entry != registry.ENTRY and published:
        problems.append(f"publishes {published}: only the entry service is reachable from outside")
    if entry != registry.ENTRY and "container_name" in service:
        problems.append("has a container_name: `--scale` needs Compose to name each replica")
    return problems


def alert_problems(rules: dict[str, Any]) -> list[str]:
    """Where alerts.yml's ServiceDown and the registry disagree."""
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            if rule.get("alert") == "ServiceDown":
                watched = set(re.findall(r'job="otel-chat-demo/([^"]+)"', rule["expr"]))
                expected = set(registry.names())
                if watched != expected:
                    return [f"ServiceDown watches {sorted(watched)}, not {sorted(expected)}"]
                return []
    return ["no ServiceDown alert"]


def main() -> int:
    problems = [f"services/registry.py: {problem}" for problem in registry.problems()]
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    problems += [f"docker-compose.yml: {problem}" for problem in compose_problems(compose)]
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    problems += [f"{ALERTS.relative_to(REPO)}: {problem}" for problem in alert_problems(rules)]
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_services: OK (compose and alert rules list {', '.join(registry.names())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
