"""services/registry.py is the one list of services, and nothing drifts from it."""

import copy
import subprocess
import sys
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.services import ALERTS, COMPOSE, alert_problems, compose_problems
from services import registry
from services.common.settings import ServiceSettings
from stack.native import (
    REPO,
    Ports,
    is_process_of,
    replicas_from_environment,
    service_components,
)


def test_the_registry_is_a_chain_from_the_entry_point_to_redis() -> None:
    assert registry.problems() == []
    assert registry.edges() == (
        ("gateway", "chat"),
        ("chat", "cache"),
        ("cache", "redis"),
        ("gateway", "redis-limits"),  # on the side: its rate limits, in a Redis of their own
    )
    # One Redis at most per service, each read from <NAME>_REDIS_URL.
    assert {s.name: s.redis for s in registry.SERVICES} == {
        "gateway": "redis-limits",
        "chat": None,
        "cache": "redis",
    }
    assert registry.by_name("gateway").setting("redis-limits") == "GATEWAY_REDIS_URL"


def test_a_broken_list_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, chat, cache = registry.SERVICES
    broken = (
        gateway,
        replace(chat, port=gateway.port, calls="redis", uses=("search",)),
        replace(cache, uses=(registry.REDIS_LIMITS,)),
    )
    monkeypatch.setattr(registry, "SERVICES", broken)
    problems = registry.problems()
    assert any("port is used twice" in p for p in problems), problems
    assert any("chat calls redis, the chain needs cache" in p for p in problems), problems
    assert any("chat uses search, which is neither" in p for p in problems), problems
    assert any("cache calls ['redis', 'redis-limits']: one Redis" in p for p in problems)
    # An admin port is a port too: never one a service (or another admin) listens on.
    clash = (gateway, replace(chat, admin_port=cache.port), cache)
    monkeypatch.setattr(registry, "SERVICES", clash)
    assert any("port is used twice" in p for p in registry.problems())


def test_a_service_reaches_redis_as_the_user_of_its_name() -> None:
    urls = {"chat": "http://chat:8001", "cache": "http://cache:8002"}
    env = registry.dependency_environment(
        {**urls, "redis": "redis://redis:6379/0", "redis-limits": "redis://redis-limits:6379/0"}
    )
    assert env["CACHE_REDIS_URL"] == "redis://cache@redis:6379/0"
    assert env["GATEWAY_REDIS_URL"] == "redis://gateway@redis-limits:6379/0"
    assert env["GATEWAY_CHAT_URL"] == "http://chat:8001"
    with pytest.raises(ValueError, match="without a user"):
        registry.redis_url_as("cache", "redis://someone@redis:6379/0")


@pytest.mark.parametrize("service", registry.SERVICES, ids=lambda s: s.name)
def test_each_service_reads_where_its_dependencies_are(service: registry.Service) -> None:
    """<NAME>_<DEPENDENCY>_URL, which the native stack and compose set, is a field of its
    settings."""
    module = import_module(f"services.{service.name}.settings")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.model_config.get("env_prefix") == f"{service.name.upper()}_"
    ]
    assert len(classes) == 1, classes
    prefix = f"{service.name.upper()}_"
    for dependency in service.dependencies:
        assert service.setting(dependency).removeprefix(prefix).lower() in classes[0].model_fields
    if service.redis is not None:  # and its ACL user's password, from a file
        assert "redis_password_file" in classes[0].model_fields


def test_the_native_stack_starts_the_registry_callees_first() -> None:
    components = service_components(Ports())
    assert [c.name for c in components] == ["cache", "chat", "gateway"]
    env = components[0].env
    assert env["GATEWAY_CHAT_URL"] == "http://127.0.0.1:8001"
    assert env["CHAT_CACHE_URL"] == "http://127.0.0.1:8002"
    # Two Redis servers, each reached as the caller's own ACL user, with its password file.
    assert env["CACHE_REDIS_URL"] == "redis://cache@127.0.0.1:6380/0"
    assert env["GATEWAY_REDIS_URL"] == "redis://gateway@127.0.0.1:6381/0"
    assert Path(env["CACHE_REDIS_PASSWORD_FILE"]).name == "cache.password"
    assert Path(env["GATEWAY_REDIS_PASSWORD_FILE"]).name == "gateway.password"
    assert Ports().services == {"gateway": 8000, "chat": 8001, "cache": 8002}


def test_replicas_natively_are_processes_on_every_tenth_port_and_callers_list_them() -> None:
    ports = Ports().with_replicas(
        replicas_from_environment({"CHAT_REPLICAS": "3", "CACHE_REPLICAS": "2"})
    )
    components = service_components(ports)
    assert [(c.name, c.command[-1]) for c in components] == [
        ("cache-1", "8002"),
        ("cache-2", "8012"),
        ("chat-1", "8001"),
        ("chat-2", "8011"),
        ("chat-3", "8021"),
        ("gateway", "8000"),
    ]
    # Each process's admin listener has a port of its own: a fault reaches that one.
    assert [c.env[f"{c.name.split('-')[0].upper()}_ADMIN_PORT"] for c in components] == [
        "8102",
        "8112",
        "8101",
        "8111",
        "8121",
        "8100",
    ]
    env = components[0].env
    assert env["GATEWAY_CHAT_URL"] == ",".join(f"http://127.0.0.1:{p}" for p in (8001, 8011, 8021))
    assert env["CHAT_CACHE_URL"] == "http://127.0.0.1:8002,http://127.0.0.1:8012"
    assert {"chat-3", "cache-2", "chat-3 admin"} <= set(ports.named())
    free = Ports.free().with_replicas({"chat": 2}, free=True)
    assert len(set(free.named().values())) == len(free.named())  # no port used twice
    assert len(free.admin_of("chat")) == 2
    second = free.with_free_services()  # a second chain beside the first (make bench)
    assert not set(second.named().values()) & {*free.of("chat"), *free.admin_of("chat")}
    # "chat" names every replica of it (stop, restart, faults), and nothing else.
    assert [is_process_of(name, "chat") for name in ("chat", "chat-2", "chat-x", "cache-1")] == [
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({"GATEWAY_REPLICAS": "2"}, "gateway runs once"),
        ({"CHAT_REPLICAS": "0"}, "at least 1"),
        ({"CHAT_REPLICAS": "three"}, "a whole number"),
    ],
)
def test_replica_counts_that_cannot_be(environ: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Ports().with_replicas(replicas_from_environment(environ))


def test_make_reads_the_registry() -> None:
    def registry_cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "services.registry", *args]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)

    assert registry_cli("names").stdout.split() == list(registry.names())
    assert registry_cli("port", "chat").stdout.strip() == "8001"
    unknown = registry_cli("port", "nosuch")
    assert unknown.returncode == 2 and "no service 'nosuch'" in unknown.stderr

    def make_dry_run(target: str) -> subprocess.CompletedProcess[str]:
        # UV=/bin/true: a dry run needs no uv (the recipe is printed, not run).
        command = ["make", "-n", target, "UV=/bin/true"]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)

    assert "--port $(python3 -m services.registry port chat)" in make_dry_run("run-chat").stdout
    unknown_target = make_dry_run("run-nosuch")
    assert unknown_target.returncode != 0
    assert "no service 'nosuch': one of gateway chat cache" in unknown_target.stderr


# --- Files that cannot import the registry are checked against it (make check) ----------


@pytest.fixture
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_agrees_with_the_registry(compose: dict[str, Any]) -> None:
    assert compose_problems(compose) == []


# Networks: each container on exactly those of what it calls and serves, not one more.
EXTRA_NETWORKS = {
    "redis reachable from chat": ("chat", "redis"),
    "the gateway reaching the cache": ("gateway", "cache"),
    "redis on the telemetry network": ("redis", "telemetry"),
    "the limits redis reachable from the cache": ("cache", "redis-limits"),
    "chat on the edge": ("chat", "edge"),
    "a backend on the telemetry network": ("prometheus", "telemetry"),
}


def _drifted(compose: dict[str, Any], change: str) -> dict[str, Any]:
    drifted = copy.deepcopy(compose)
    services = drifted["services"]
    if change == "a service is missing":
        del services["chat"]
    elif change == "a port differs":
        services["cache"]["build"]["args"]["PORT"] = "8003"
    elif change == "an unlisted service":
        services["search"] = copy.deepcopy(services["cache"])
        services["search"]["build"]["args"]["SERVICE"] = "search"
    elif change == "an unlisted service, once out of its profile":
        del services["loadgen"]["profiles"]
    elif change == "a dependency url":
        services["chat"]["environment"]["CHAT_CACHE_URL"] = "http://cache:9999"
    elif change == "a side dependency missing":
        del services["gateway"]["environment"]["GATEWAY_REDIS_URL"]
    elif change == "no admin key":
        del services["cache"]["environment"]["CACHE_ADMIN_KEY"]
    elif change == "an internal port published":
        services["chat"]["ports"] = ["127.0.0.1:8001:8001"]
    elif change == "a fixed container name":
        services["cache"]["container_name"] = "cache"
    elif change == "the admin listener on every address":
        services["chat"]["environment"]["CHAT_ADMIN_HOST"] = "0.0.0.0"  # noqa: S104
    elif change == "the admin port published":
        services["gateway"]["ports"].append("127.0.0.1:8100:8100")
    elif change == "redis without a user":
        services["cache"]["environment"]["CACHE_REDIS_URL"] = "redis://redis:6379/0"
    elif change == "the limits in the data redis":
        services["gateway"]["environment"]["GATEWAY_REDIS_URL"] = "redis://gateway@redis:6379/0"
    elif change == "a password file that is no secret":
        environment = services["gateway"]["environment"]
        environment["GATEWAY_REDIS_PASSWORD_FILE"] = "/app/redis.txt"  # noqa: S105 (a path)
    elif change in EXTRA_NETWORKS:
        container, network = EXTRA_NETWORKS[change]
        services[container]["networks"].append(network)
    elif change == "on the default network":
        del services["redis-limits"]["networks"]
    elif change == "a network not internal":
        del drifted["networks"]["redis"]["internal"]
    elif change == "the gateway off the edge":
        services["gateway"]["networks"].remove("edge")
    return drifted


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        ("a service is missing", "chat: missing"),
        ("a port differs", "cache: build arg PORT=8003"),
        ("an unlisted service", "search is built from the Dockerfile"),
        ("an unlisted service, once out of its profile", "loadgen is built from the Dockerfile"),
        ("a dependency url", "CHAT_CACHE_URL='http://cache:9999'"),
        ("a side dependency missing", "gateway: GATEWAY_REDIS_URL=''"),
        ("no admin key", "cache: no CACHE_ADMIN_KEY"),
        ("an internal port published", "chat: publishes ['8001']"),
        ("a fixed container name", "cache: has a container_name"),
        ("the admin listener on every address", "chat: admin listener on 0.0.0.0"),
        ("the admin port published", "gateway: publishes or exposes its admin port 8100"),
        ("redis without a user", "CACHE_REDIS_URL='redis://redis:6379/0', expected redis://cache@"),
        ("the limits in the data redis", "expected redis://gateway@redis-limits:"),
        ("a password file that is no secret", "GATEWAY_REDIS_PASSWORD_FILE is not a secret"),
        ("redis reachable from chat", "chat: on network redis, which it must not be on"),
        ("the gateway reaching the cache", "gateway: on network cache, which it must not"),
        ("redis on the telemetry network", "redis: on network telemetry, which it must not"),
        ("the limits redis reachable from the cache", "cache: on network redis-limits, which"),
        ("chat on the edge", "chat: on network edge, which it must not be on"),
        ("a backend on the telemetry network", "prometheus: on network telemetry, which"),
        ("on the default network", "redis-limits: on the default network"),
        ("a network not internal", "network redis: must be internal: true"),
        ("the gateway off the edge", "gateway: not on network edge"),
    ],
)
def test_compose_drift_is_reported(compose: dict[str, Any], change: str, reported: str) -> None:
    problems = compose_problems(_drifted(compose, change))
    assert any(reported in problem for problem in problems), problems


def test_the_service_down_alert_watches_every_service() -> None:
    rules: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    assert alert_problems(rules) == []
    text = ALERTS.read_text().replace(
        'or absent_over_time(target_info{job="otel-chat-demo/chat"}[2m])', ""
    )
    assert "ServiceDown watches ['cache', 'gateway']" in alert_problems(yaml.safe_load(text))[0]
