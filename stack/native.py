"""The native stack: the Docker compose pipeline with Apache-licensed stand-ins.

==============  ==========================  ========================================
Docker service  native process              why
==============  ==========================  ========================================
redis,          redis-server (Debian)       the same server, configurations and
redis-limits                                users (stack.redis_servers)
gateway, chat,  uvicorn, from .venv         the same code and settings
cache
otel-collector  .tools/bin/otelcol (OCB)    the same otel-collector/config.yaml,
                                            endpoints from environment variables
tempo           .tools/bin/jaeger (v2)      stores OTLP traces, answers by trace id
loki            .tools/bin/victoria-logs    stores OTLP logs, queries by trace_id
prometheus      .tools/bin/prometheus       the same Prometheus 3, prometheus.yml
                                            and alert rules
grafana         (none)                      AGPL, and needs a browser anyway: the
                                            backends' own APIs and UIs stand in
==============  ==========================  ========================================

Tempo, Loki and Grafana are AGPL-licensed and are never built here. Every
process binds to 127.0.0.1; logs go to ``<run_dir>/logs/<name>.log``.
"""

import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from services import registry
from stack.processes import (
    Probe,
    free_ports,
    http_ok,
    port_is_free,
    redis_ping,
    start,
    start_time,
    stop_pid,
    wait_ready,
)
from stack.redis_servers import password_environment, redis_command
from stack.redis_servers import urls as redis_urls

REPO = Path(__file__).resolve().parents[1]
# Where `make dev` keeps its state, data and logs (a test points make trace elsewhere).
RUN_DIR = Path(os.environ.get("STACK_RUN_DIR", REPO / ".run"))
LOOPBACK = "http://127.0.0.1"  # every process of the native stack binds here only
DEMO_ADMIN_KEY = "demo-admin-key"  # the compose stack's is ADMIN_KEY in .env
TOOLS_BIN = REPO / os.environ.get("TOOLS_DIR", ".tools") / "bin"  # a relative TOOLS_DIR: from REPO


def _registry_ports() -> dict[str, int]:
    return {service.name: service.port for service in registry.SERVICES}


def _registry_admin_ports() -> dict[str, list[int]]:
    return {service.name: [service.admin_port] for service in registry.SERVICES}


def replica_names(service: str, count: int) -> list[str]:
    """The processes of ``service``: its own name when it runs once (as it always
    did), ``chat-1``, ``chat-2``, ... when it runs several times."""
    return [service] if count == 1 else [f"{service}-{i}" for i in range(1, count + 1)]


def is_process_of(process: str, name: str) -> bool:
    """``process`` is ``name`` itself or one of its replicas (``chat-2`` of ``chat``):
    stopping or restarting "chat" means all of them."""
    rest = process.removeprefix(f"{name}-")
    return process == name or (rest != process and rest.isdigit())


@dataclass(frozen=True)
class Ports:
    """Every port the native stack listens on (all on 127.0.0.1)."""

    # Service name -> port; by default each service's own from services/registry.py.
    # With replicas, the first replica's.
    services: Mapping[str, int] = field(default_factory=_registry_ports)
    # Service name -> the ports of its other replicas (none: one process each).
    replicas: Mapping[str, list[int]] = field(default_factory=dict)
    # Service name -> each replica's admin port (services/common/admin.py), in the
    # order of ``of(service)``; by default each service's own from the registry.
    admin: Mapping[str, list[int]] = field(default_factory=_registry_admin_ports)
    # Not 6379: leave a Redis the machine may already run alone.
    redis: int = 6380
    redis_limits: int = 6381  # the gateway's rate limits (stack.redis_servers)
    otlp_grpc: int = 4317
    otlp_http: int = 4318
    collector_health: int = 13133
    collector_metrics: int = 8888
    prometheus: int = 9090
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_otlp_grpc: int = 14317
    jaeger_otlp_http: int = 14318
    jaeger_health: int = 13134
    jaeger_metrics: int = 8889
    victoria_logs: int = 9428

    @property
    def redises(self) -> dict[str, int]:
        """Each Redis's port, by its name in services/registry.py."""
        return {registry.REDIS: self.redis, registry.REDIS_LIMITS: self.redis_limits}

    @property
    def entry(self) -> int:
        """The port clients call (services/registry.py: the entry service's)."""
        return self.services[registry.ENTRY.name]

    def of(self, service: str) -> list[int]:
        """The ports of every replica of ``service``, the first one's first."""
        return [self.services[service], *self.replicas.get(service, [])]

    def processes(self, service: str) -> list[tuple[str, int]]:
        """Each replica of ``service``: its process name and its port."""
        ports = self.of(service)
        return list(zip(replica_names(service, len(ports)), ports, strict=True))

    def admin_of(self, service: str) -> list[int]:
        """The admin port of every replica of ``service``, the first one's first."""
        return list(self.admin[service])

    def named(self) -> dict[str, int]:
        """Every port by what listens on it, services (each replica, and its admin
        listener) included."""
        others = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _OWN}
        services: dict[str, int] = {}
        for service in self.services:
            for (name, port), admin in zip(
                self.processes(service), self.admin_of(service), strict=True
            ):
                services |= {name: port, f"{name} admin": admin}
        return {**services, **others}

    def with_replicas(self, counts: Mapping[str, int], *, free: bool = False) -> "Ports":
        """These ports with ``counts[service]`` processes of a service: the first on
        the service's port, the others on free ports (``free``) or every tenth port
        after it (chat 8001, 8011, 8021; cache 8002, 8012). The entry service stays
        one process: it is the port clients call, and nothing balances in front of it.
        """
        replicas: dict[str, list[int]] = {}
        admin = dict(self.admin)
        for service, count in counts.items():
            first = self.services[service]  # KeyError: not a service
            if count < 1:
                raise ValueError(f"{service}: {count} replicas; at least 1")
            if count > 1 and service == registry.ENTRY.name:
                raise ValueError(f"{service} runs once: it is the entry point (port {first})")
            replicas[service] = [first + 10 * i for i in range(1, count)]
            first_admin = self.admin[service][0]
            admin[service] = [first_admin + 10 * i for i in range(count)]
        if free:  # free ports, none of them one of these ports
            taken = set(self.named().values())
            wanted = 2 * sum(counts.values())
            spare = iter(p for p in free_ports(len(taken) + wanted) if p not in taken)
            replicas = {s: [next(spare) for _ in ports] for s, ports in replicas.items()}
            admin |= {s: [admin[s][0], *(next(spare) for _ in replicas[s])] for s in counts}
        return replace(self, replicas={s: p for s, p in replicas.items() if p}, admin=admin)

    @classmethod
    def free(cls) -> "Ports":
        """A free port for everything: a test stack beside a running ``make dev``."""
        names = [f.name for f in fields(cls) if f.name not in _OWN]
        services = registry.names()
        ports = iter(free_ports(len(names) + 2 * len(services)))  # all different
        others: dict[str, Any] = {name: next(ports) for name in names}
        return cls(
            services={name: next(ports) for name in services},
            admin={name: [next(ports)] for name in services},
            **others,
        )

    def with_free_services(self) -> "Ports":
        """These ports, but a free port and admin port for every service (one
        process each): a second chain beside the first."""
        taken = set(self.named().values())
        services = registry.names()
        spare = iter(p for p in free_ports(len(taken) + 2 * len(services)) if p not in taken)
        return replace(
            self,
            services={name: next(spare) for name in services},
            replicas={},
            admin={name: [next(spare)] for name in services},
        )


_OWN = {"services", "replicas", "admin"}  # the services' ports, not a component's


def replicas_from_environment(environ: Mapping[str, str]) -> dict[str, int]:
    """``<SERVICE>_REPLICAS`` of each service that has one (``CHAT_REPLICAS=3 make dev``)."""
    counts = {}
    for name in registry.names():
        value = environ.get(f"{name.upper()}_REPLICAS", "").strip()
        if value:
            if not value.isdigit():
                raise ValueError(f"{name.upper()}_REPLICAS={value!r}: a whole number, please")
            counts[name] = int(value)
    return counts


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    ready: Probe
    env: dict[str, str] = field(default_factory=dict)
    # Shown once the stack is up, with what answers there (`make dev`'s list).
    url: str | None = None
    url_note: str = ""
    # The first start of a Go binary from a cold disk cache can be slow.
    timeout: float = 60


def collector_environment(ports: Ports) -> dict[str, str]:
    """The variables otel-collector/config.yaml reads, for the native stack
    (otel-collector/native.env has the same for the default ports)."""
    return {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{ports.collector_health}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(ports.collector_metrics),
        "TRACES_OTLP_ENDPOINT": f"127.0.0.1:{ports.jaeger_otlp_grpc}",
        "METRICS_OTLP_ENDPOINT": f"{LOOPBACK}:{ports.prometheus}/api/v1/otlp/v1/metrics",
        "LOGS_OTLP_ENDPOINT": f"{LOOPBACK}:{ports.victoria_logs}/insert/opentelemetry/v1/logs",
        "DEPLOYMENT_ENVIRONMENT": "native",
    }


def uvicorn_command(service: str, port: int) -> list[str]:
    """One service, on loopback, with this interpreter (the project's .venv)."""
    app = registry.by_name(service).app
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def uvicorn_settings(service: str) -> dict[str, str]:
    """uvicorn's own settings for ``service`` (``UVICORN_*`` variables), from the
    ``deploy/<service>/uvicorn.env`` that docker-compose.yml and the Kubernetes
    manifests load too."""
    path = REPO / "deploy" / service / "uvicorn.env"
    if not path.exists():
        return {}
    lines = (line.strip() for line in path.read_text().splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def service_components(ports: Ports, env: Mapping[str, str] | None = None) -> list[Component]:
    """The services on ``ports`` (every replica of each), wired to each other and to
    the Collector, callees first; ``env`` adds to or overrides their environment.

    A caller reads where its callee is from ``<NAME>_<DEPENDENCY>_URL``: with
    replicas, the URL of each, comma-separated, and it takes them in turn
    (services/common/balancing.py), as it takes the addresses of a compose
    service's name in turn under Docker.
    """
    urls = {
        name: ",".join(f"{LOOPBACK}:{port}" for port in ports.of(name)) for name in ports.services
    }
    urls |= redis_urls(ports.redises)
    service_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"{LOOPBACK}:{ports.otlp_http}",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=native",
        **registry.dependency_environment(urls),
        **password_environment(),  # each service's Redis password: the demo's
        # The chat page links each reply's trace into Jaeger's API (no Grafana here).
        "GATEWAY_TRACE_LINK_TEMPLATE": f"{LOOPBACK}:{ports.jaeger_query}/api/v3/traces/"
        "{trace_id}",
        # The admin endpoints (faults on purpose, `make fault`): on a port of their
        # own (<NAME>_ADMIN_PORT, below), on loopback.
        **{f"{name.upper()}_ADMIN_KEY": DEMO_ADMIN_KEY for name in registry.names()},
        # The keys the Docker stack mounts too: the demo key and the load-test keys.
        "GATEWAY_API_KEYS_FILE": str(REPO / "deploy/gateway/demo-secrets/api-keys.json"),
        **(env or {}),
    }

    def service(name: str, process: str, port: int, admin_port: int) -> Component:
        # The entry service serves the chat page at /; every service its API docs.
        entry = name == registry.ENTRY.name
        admin = {f"{name.upper()}_ADMIN_PORT": str(admin_port)}  # each replica its own
        return Component(
            process,
            uvicorn_command(name, port),
            http_ok(f"{LOOPBACK}:{port}/readyz"),
            env={**uvicorn_settings(name), **service_env, **admin},
            url=f"{LOOPBACK}:{port}/" if entry else f"{LOOPBACK}:{port}/docs",
            url_note="the chat page (its traces start in the browser); API docs at /docs"
            if entry
            else "",
        )

    return [
        service(s.name, process, port, admin_port)
        for s in registry.start_order()
        for (process, port), admin_port in zip(
            ports.processes(s.name), ports.admin_of(s.name), strict=True
        )
    ]


def components(
    ports: Ports, run_dir: Path, service_env: Mapping[str, str] | None = None
) -> list[Component]:
    """Everything to start, in order: stores, then the Collector, then the services."""
    data = run_dir / "data"
    collector_env = collector_environment(ports)
    jaeger_env = {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.jaeger_otlp_grpc}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.jaeger_otlp_http}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports.jaeger_query}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports.jaeger_query_grpc}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports.jaeger_health}",
        "JAEGER_TELEMETRY_PORT": str(ports.jaeger_metrics),
    }
    prometheus_config = run_dir / "prometheus/prometheus.yml"  # see write_prometheus_config

    return [
        Component(
            registry.REDIS,
            redis_command(ports.redis, data / "redis"),
            redis_ping(ports.redis),
        ),
        Component(
            registry.REDIS_LIMITS,
            redis_command(ports.redis_limits, data / "redis-limits", registry.REDIS_LIMITS),
            redis_ping(ports.redis_limits),
        ),
        Component(
            "jaeger",
            [str(TOOLS_BIN / "jaeger"), "--config", str(REPO / "deploy/jaeger/config.yaml")],
            http_ok(f"{LOOPBACK}:{ports.jaeger_health}/status"),
            env=jaeger_env,
            url=f"{LOOPBACK}:{ports.jaeger_query}/api/services",
            url_note="query API (/api/v3/traces/<id>); this build's web UI is a placeholder",
        ),
        Component(
            "victoria-logs",
            [
                str(TOOLS_BIN / "victoria-logs"),
                f"-httpListenAddr=127.0.0.1:{ports.victoria_logs}",
                f"-storageDataPath={data / 'victoria-logs'}",
                "-retentionPeriod=7d",
            ],
            http_ok(f"{LOOPBACK}:{ports.victoria_logs}/health"),
            url=f"{LOOPBACK}:{ports.victoria_logs}/select/vmui/",
            url_note='web UI (LogsQL, e.g. trace_id:"<32 hex digits>")',
        ),
        Component(
            "prometheus",
            [
                str(TOOLS_BIN / "prometheus"),
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={data / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                "--web.enable-otlp-receiver",
                "--enable-feature=exemplar-storage",
            ],
            http_ok(f"{LOOPBACK}:{ports.prometheus}/-/ready"),
            url=f"{LOOPBACK}:{ports.prometheus}/api/v1/query?query=up",
            url_note="HTTP API only: this build has no web UI (its pages answer 500)",
        ),
        Component(
            "otel-collector",
            [str(TOOLS_BIN / "otelcol"), f"--config={REPO / 'otel-collector/config.yaml'}"],
            http_ok(f"{LOOPBACK}:{ports.collector_health}/"),
            env=collector_env,
        ),
        *service_components(ports, service_env),
    ]


def write_prometheus_config(run_dir: Path, ports: Ports) -> None:
    """deploy/prometheus as it is, but for the Collector target's port.

    prometheus.yml reads its Collector targets from targets/*.yml beside it (the
    Docker stack mounts its own); here that one file is written with the port in
    use, next to a copy of prometheus.yml and the rules.
    """
    overlay = run_dir / "prometheus"
    shutil.rmtree(overlay, ignore_errors=True)
    (overlay / "targets").mkdir(parents=True)
    deploy = REPO / "deploy/prometheus"
    shutil.copy(deploy / "prometheus.yml", overlay / "prometheus.yml")
    shutil.copytree(deploy / "rules", overlay / "rules")
    (overlay / "targets/otel-collector.yml").write_text(
        f'- targets: ["127.0.0.1:{ports.collector_metrics}"]\n'
    )


@dataclass
class Running:
    """A started process, as recorded in ``<run_dir>/state.json``."""

    name: str
    pid: int
    command: list[str]
    log: str
    # When the process started, so a reused pid is never mistaken for ours.
    started: str | None


class NativeStack:
    """Start the components in order, each once the one before is ready."""

    def __init__(
        self,
        run_dir: Path,
        ports: Ports | None = None,
        *,
        detachable: bool = False,
        service_env: Mapping[str, str] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.ports = ports or Ports()
        self.service_env = service_env
        # Processes in sessions of their own, to outlive `python -m stack up --detach`.
        self.detachable = detachable
        self.running: list[Running] = []

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    def start(self) -> None:
        missing = [tool for tool in _TOOLS if not (TOOLS_BIN / tool).exists()]
        if missing:
            raise RuntimeError(f"missing {missing} in {TOOLS_BIN}: run `make tools`")
        busy = [name for name, port in self.ports.named().items() if not port_is_free(port)]
        if busy:
            # A probe could otherwise see another program's port and call us ready.
            raise RuntimeError(f"ports in use: {busy} (is another stack running?)")
        write_prometheus_config(self.run_dir, self.ports)
        self.start_components(components(self.ports, self.run_dir, self.service_env))

    def start_components(self, to_start: list[Component]) -> None:
        """Start each component once the one before is ready; ``stop`` stops them all."""
        for component in to_start:
            log_path = self.run_dir / "logs" / f"{component.name}.log"
            process = start(
                component.command,
                log_path=log_path,
                env=component.env,
                cwd=REPO,
                own_session=self.detachable,
            )
            self.running.append(
                Running(
                    component.name,
                    process.pid,
                    component.command,
                    str(log_path),
                    started=start_time(process.pid),
                )
            )
            self._save()
            wait_ready(
                component.name,
                process,
                component.ready,
                log_path=log_path,
                timeout=component.timeout,
            )

    def stop(self) -> None:
        """Stop what this stack started, newest first (services before the Collector
        before the stores, so the last telemetry still has somewhere to go)."""
        for process in reversed(self.running):
            stop_pid(process.pid)
        self.running.clear()
        self.state_file.unlink(missing_ok=True)

    def stop_component(self, name: str, *, kill: bool = False) -> None:
        """Stop one component of the running stack (a service: every replica of it):
        SIGTERM (a clean stop), or SIGKILL with ``kill`` (a crash). For fault drills
        and `make fault`."""
        for process in [r for r in self.running if is_process_of(r.name, name)]:
            if kill:
                os.kill(process.pid, signal.SIGKILL)
            stop_pid(process.pid)
            self.running.remove(process)
        self._save()

    def restart_component(self, name: str) -> None:
        """Start a stopped component (a service: every replica of it) again, as the
        stack started it, and wait until it is ready."""
        every = components(self.ports, self.run_dir, self.service_env)
        running = {r.name for r in self.running}
        self.start_components(
            [c for c in every if is_process_of(c.name, name) and c.name not in running]
        )
        order = [c.name for c in every]
        self.running.sort(key=lambda r: order.index(r.name) if r.name in order else len(order))
        self._save()

    def urls(self) -> dict[str, tuple[str, str]]:
        """Name → (URL, what answers there) of everything a user can open."""
        return {c.name: (c.url, c.url_note) for c in components(self.ports, self.run_dir) if c.url}

    def _save(self) -> None:
        state = {"ports": asdict(self.ports), "running": [asdict(r) for r in self.running]}
        self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> "NativeStack | None":
        """The detached stack recorded in ``run_dir``, keeping only processes that
        are still the ones we started (a pid can be reused by another program)."""
        state_file = run_dir / "state.json"
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        # Detached: what it starts again (a restarted component) outlives the caller.
        stack = cls(run_dir, Ports(**state["ports"]), detachable=True)
        stack.running = [r for r in (Running(**raw) for raw in state["running"]) if _is_ours(r)]
        return stack


_TOOLS = ("otelcol", "prometheus", "jaeger", "victoria-logs")


def _is_ours(process: Running) -> bool:
    return process.started is not None and start_time(process.pid) == process.started


@contextmanager
def native_stack(
    run_dir: Path, ports: Ports | None = None, *, service_env: Mapping[str, str] | None = None
) -> Iterator[NativeStack]:
    """The whole stack for the duration of a block (tests), stopped in any case."""
    stack = NativeStack(run_dir, ports, service_env=service_env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
