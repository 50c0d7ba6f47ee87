"""The rendered overlays wire the services the way services/registry.py and their
settings say: what the API server cannot know (a misspelt setting is just another
environment variable to it)."""

import importlib
import json
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from checks.k8s import K8S, Manifest, render
from services.common.settings import ServiceSettings
from services.gateway.settings import GatewaySettings
from services.registry import ENTRY, REDISES, SERVICES, Service

OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir())
REDIS_PORT = 6379


def settings_fields(service: Service) -> set[str]:
    module = importlib.import_module(f"services.{service.name}.settings")
    (settings,) = (
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    )
    return set(settings.model_fields)


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = (m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name)
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / "overlays" / request.param).manifests


def test_there_are_overlays() -> None:
    assert set(OVERLAYS) >= {"dev", "production"}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_is_wired_as_the_registry_says(
    manifests: list[Manifest], service: Service
) -> None:
    deployment = find(manifests, "Deployment", service.name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": service.port}]
    assert find(manifests, "Service", service.name)["spec"]["ports"][0]["port"] == service.port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    env = {item["name"]: item for item in container["env"]}
    for dependency in service.dependencies:
        url = urlsplit(env[service.setting(dependency)]["value"])
        port = (
            REDIS_PORT
            if dependency in REDISES
            else next(s.port for s in SERVICES if s.name == dependency)
        )
        assert (url.hostname, url.port) == (dependency, port)
    if service.redis is not None:
        # As the ACL user of its name, the password a file from its own Secret.
        assert urlsplit(env[service.setting(service.redis)]["value"]).username == service.name
        password = PurePosixPath(env[f"{service.name.upper()}_REDIS_PASSWORD_FILE"]["value"])
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        secret = volumes[mounts[str(password.parent)]]["secret"]["secretName"]
        assert secret == f"redis-{service.name}-password"

    # Every <SERVICE>_* variable is a setting the service has.
    prefix = f"{service.name.upper()}_"
    fields = settings_fields(service)
    for name in env:
        if name.startswith(prefix):
            assert name.removeprefix(prefix).lower() in fields, f"{name}: no such setting"


def _ports(value: Any) -> set[int]:
    """Every port number anywhere in ``value`` (a manifest, or part of one)."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if "port" in k.lower() and isinstance(v, int)}
        return found.union(*(_ports(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_ports(v) for v in value))
    return set()


def test_no_admin_port_is_exposed(manifests: list[Manifest]) -> None:
    """The admin listeners bind each pod's 127.0.0.1: no Service, containerPort or
    network policy names their ports (services/common/admin.py)."""
    admin_ports = {service.admin_port for service in SERVICES}
    for manifest in manifests:
        assert not _ports(manifest) & admin_ports, manifest["metadata"]["name"]


def test_the_gateway_answers_its_services_names_and_port_forwards(
    manifests: list[Manifest],
) -> None:
    (container,) = find(manifests, "Deployment", ENTRY.name)["spec"]["template"]["spec"][
        "containers"
    ]
    env = {item["name"]: item.get("value") for item in container["env"]}
    hosts = GatewaySettings(allowed_hosts=json.loads(env["GATEWAY_ALLOWED_HOSTS"])).allowed_hosts
    namespace = find(manifests, "Deployment", ENTRY.name)["metadata"]["namespace"]
    service = ENTRY.name
    expected = {"localhost", service, f"{service}.{namespace}.svc.cluster.local"}
    assert expected <= set(hosts)
    # The probes ask the health paths, which answer any Host (they name the pod's IP).
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in {"/healthz", "/readyz"}


@pytest.mark.parametrize("service", [s for s in SERVICES[1:]], ids=lambda s: s.name)
def test_called_services_are_headless(manifests: list[Manifest], service: Service) -> None:
    """Their callers spread requests over the pods' addresses themselves."""
    assert find(manifests, "Service", service.name)["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_autoscales_and_survives_a_drain(
    manifests: list[Manifest], service: Service
) -> None:
    autoscaler = find(manifests, "HorizontalPodAutoscaler", service.name)
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == service.name
    assert "replicas" not in find(manifests, "Deployment", service.name)["spec"]
    budget = find(manifests, "PodDisruptionBudget", service.name)
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": service.name}


@pytest.mark.parametrize("redis", REDISES)
def test_each_redis_runs_its_own_configuration_and_users(
    manifests: list[Manifest], redis: str
) -> None:
    (workload,) = (
        m
        for m in manifests
        if m["kind"] in ("StatefulSet", "Deployment") and m["metadata"]["name"] == redis
    )
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["redis-server", f"/usr/local/etc/redis/{redis}.conf"]
    acl = PurePosixPath(container["args"][container["args"].index("--aclfile") + 1])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(acl.parent)]]["secret"]["secretName"] == f"{redis}-acl"
    assert acl.name == f"{redis}.acl"
    assert find(manifests, "Service", redis)["spec"]["ports"][0]["port"] == REDIS_PORT


def test_the_demo_secrets_are_only_in_the_dev_overlay() -> None:
    """Every Secret a workload reads exists in dev (the demo's); production has none of
    them: its operators create their own (docs/run/kubernetes.md)."""
    by_overlay = {name: render(K8S / "overlays" / name).manifests for name in OVERLAYS}
    needed = set()
    for manifest in by_overlay["dev"]:
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            pod = manifest["spec"]["template"]["spec"]
            needed |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    secrets = {
        name: {m["metadata"]["name"] for m in ms if m["kind"] == "Secret"}
        for name, ms in by_overlay.items()
    }
    assert needed >= {"redis-acl", "redis-limits-acl", "redis-cache-password"}
    assert needed <= secrets["dev"]
    assert secrets["production"] == set()
