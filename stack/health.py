"""Is every part of the running stack up, and is nothing left once it is down?

For ``make verify-stack`` (stack.verify), on each side:

- Docker: ``docker compose ps``. Every service of docker-compose.yml outside a
  profile has a running container, and each one with a healthcheck is ``healthy``
  (the Collector has none, its image having no shell: the ``otel-collector-health``
  container probes it from outside, and is held to ``healthy`` like the others).
- Native: every component of stack.native runs as recorded in ``.run/state.json``
  and answers the probe that ``make up`` waited on.
- Kubernetes: every pod in the namespace is Running and Ready, the services' pods
  and the backends' among them.

Each answer is a list of problems, empty when all is well. The parsing is kept
apart from the commands (``*_problems`` functions take what the commands print), so
the rules are tested on recorded answers without an engine or a cluster.
"""

import json
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from services import registry
from stack.native import REPO, NativeStack, Ports, components
from stack.processes import port_is_free

COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_PROJECT = "otel-chat-demo"  # docker-compose.yml's `name:`
NAMESPACE = "otel-chat-demo"  # deploy/k8s/base/namespace.yaml
# The Helm releases of the backends (docs/run/kubernetes.md), by their instance label.
HELM_RELEASES = ("tempo", "loki", "prometheus", "grafana")


# --- Docker ---------------------------------------------------------------------------


def compose_services(compose: Mapping[str, Any]) -> dict[str, bool]:
    """Service -> whether it has a healthcheck, for the services ``make up`` starts
    (not those behind a profile, like loadgen). PyYAML resolves the file's ``<<:``
    merges, so a healthcheck from a shared block counts."""
    return {
        name: bool(service.get("healthcheck"))
        for name, service in compose["services"].items()
        if not service.get("profiles")
    }


def parse_compose_ps(text: str) -> list[dict[str, Any]]:
    """``docker compose ps --format json``: one object per line (Compose 2.21 and
    newer), or one array (older)."""
    text = text.strip()
    if text.startswith("["):
        rows: list[dict[str, Any]] = json.loads(text)
        return rows
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def compose_problems(expected: Mapping[str, bool], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is wrong with the containers ``rows`` describe, given ``expected``."""
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_service.setdefault(str(row.get("Service")), []).append(row)
    problems = []
    for service, has_healthcheck in sorted(expected.items()):
        containers = by_service.get(service, [])
        if not containers:
            problems.append(f"{service}: no container")
        for row in containers:
            name, state, health = row.get("Name", service), row.get("State"), row.get("Health")
            if state != "running":
                problems.append(f"{name}: {state} (exit code {row.get('ExitCode')})")
            elif has_healthcheck and health != "healthy":
                problems.append(f"{name}: running but {health or 'no health status'}")
    return problems


def _compose(*args: str) -> str:
    command = ["docker", "compose", *args]  # docker from PATH, fixed arguments
    return subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout


def docker_problems() -> list[str]:
    expected = compose_services(yaml.safe_load(COMPOSE_FILE.read_text()))
    try:
        rows = parse_compose_ps(_compose("ps", "--all", "--format", "json"))
    except (OSError, subprocess.CalledProcessError) as exc:
        return [f"docker compose ps failed: {exc}"]
    return compose_problems(expected, rows)


def docker_leftovers() -> list[str]:
    """After ``make down VOLUMES=1``: containers, volumes and networks of the project
    that are still there."""
    label = f"label=com.docker.compose.project={COMPOSE_PROJECT}"
    queries = {
        "container": ["container", "ls", "--all", "--quiet", "--filter", label],
        "volume": ["volume", "ls", "--quiet", "--filter", label],
        "network": ["network", "ls", "--quiet", "--filter", label],
    }
    problems = []
    for what, args in queries.items():
        result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)  # noqa: S607
        if result.returncode != 0:
            problems.append(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()}")
        problems += [f"{what} {ident} is still there" for ident in result.stdout.split()]
    return problems


# --- Native ---------------------------------------------------------------------------


def native_problems(stack: NativeStack) -> list[str]:
    """Every component running, as recorded, and answering its readiness probe."""
    running = {process.name for process in stack.running}
    problems = []
    for component in components(stack.ports, stack.run_dir):
        if component.name not in running:
            problems.append(f"{component.name}: not running (`make logs` shows why)")
            continue
        try:
            answer = component.ready()
        except Exception as exc:  # any failure of the probe is the answer
            answer, detail = None, f": {exc!r}"
        else:
            detail = ""
        if answer is None:
            problems.append(f"{component.name}: running but not ready{detail}")
    return problems


def native_leftovers(stack: NativeStack | None, ports: Ports) -> list[str]:
    """After ``make down``: no process of the stack left, and its ports free."""
    problems = (
        [f"{process.name} (pid {process.pid}) still runs" for process in stack.running]
        if stack
        else []
    )
    busy = [name for name, port in ports.named().items() if not port_is_free(port)]
    return problems + [f"port of {name} still in use" for name in busy]


# --- Kubernetes -----------------------------------------------------------------------


def pod_problems(pods: Mapping[str, Any]) -> list[str]:
    """What is wrong with the pods of ``kubectl get pods -o json``: each one Running and
    Ready (finished ones aside), the services' and the backends' among them."""
    problems = []
    seen: set[str] = set()
    for pod in pods.get("items", []):
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        labels = meta.get("labels", {})
        seen |= {
            labels.get("app.kubernetes.io/name", ""),
            labels.get("app.kubernetes.io/instance", ""),
        }
        if status.get("phase") == "Succeeded":
            continue
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        if status.get("phase") != "Running" or not ready:
            problems.append(f"pod {meta.get('name')}: {status.get('phase')}, not ready")
    wanted = [*registry.names(), *registry.REDISES, "otel-collector", *HELM_RELEASES]
    return problems + [f"{name}: no pod" for name in wanted if name not in seen]


def kubernetes_problems(namespace: str = NAMESPACE) -> list[str]:
    command = ["kubectl", "-n", namespace, "get", "pods", "-o", "json"]  # kubectl from PATH
    try:
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return [f"kubectl get pods failed: {exc}"]
    return pod_problems(json.loads(out))
