"""The policy half of checks/k8s.py, on small hand-made manifests (the API server
half runs in `make check`)."""

import copy
import tomllib
from typing import Any

import pytest
import yaml

from checks.k8s import REPO, image_problem, pinned_images, policy_problems
from services.registry import names

PINS = {"redis": "redis:8.10.2-alpine"}


def deployment(**container: Any) -> dict[str, Any]:
    """A Deployment that passes every rule, with the container's fields overridden."""
    app = {
        "name": "app",
        "image": "otel-chat-demo-chat:0.1.0",
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
        **container,
    }
    return {
        "kind": "Deployment",
        "metadata": {"name": "chat"},
        "spec": {
            "template": {
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [app],
                }
            }
        },
    }


def test_a_compliant_deployment_passes() -> None:
    assert policy_problems([deployment()], PINS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"livenessProbe": None}, "no livenessProbe"),
        ({"readinessProbe": None}, "no readinessProbe"),
        (
            {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
            "no cpu limit",
        ),
        (
            {"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
            "no memory request",
        ),
        ({"securityContext": {"allowPrivilegeEscalation": False}}, "root filesystem is writable"),
        ({"securityContext": {"readOnlyRootFilesystem": True}}, "allowPrivilegeEscalation"),
        ({"image": "otel-chat-demo-chat"}, "has no tag"),
        ({"image": "registry:5000/chat"}, "has no tag"),
        ({"image": "otel-chat-demo-chat:latest"}, "'latest' moves"),
        ({"image": "redis:7-alpine"}, "differs from .env's"),
    ],
)
def test_each_rule_fails_a_manifest_that_breaks_it(change: dict[str, Any], expected: str) -> None:
    manifest = deployment(**change)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    for key, value in change.items():
        if value is None:
            del container[key]
    problems = policy_problems([manifest], PINS)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith("Deployment/chat container app:")


def test_root_or_unknown_user_fails() -> None:
    as_root = deployment()
    as_root["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 0}
    no_user = copy.deepcopy(as_root)
    no_user["spec"]["template"]["spec"]["securityContext"] = {}
    assert any("runAsUser" in p for p in policy_problems([as_root], PINS))
    assert any("runAsNonRoot" in p for p in policy_problems([no_user], PINS))


def test_container_settings_override_the_pod_s() -> None:
    manifest = deployment(securityContext={"runAsUser": 0, "readOnlyRootFilesystem": True})
    assert any("runAsUser" in p for p in policy_problems([manifest], PINS))


def test_init_containers_and_statefulsets_are_checked_too() -> None:
    manifest = deployment()
    manifest["kind"] = "StatefulSet"
    manifest["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    problems = policy_problems([manifest], PINS)
    assert problems and all(p.startswith("StatefulSet/chat container init:") for p in problems)


def test_other_kinds_are_not_workloads() -> None:
    assert policy_problems([{"kind": "Service", "metadata": {"name": "chat"}}], PINS) == []


def test_digests_pin() -> None:
    assert image_problem("redis@sha256:" + "0" * 64, PINS) is None


def test_the_pins_come_from_dot_env() -> None:
    pins = pinned_images()
    assert pins["redis"].startswith("redis:")
    assert pins["otel/opentelemetry-collector-contrib"].startswith(
        "otel/opentelemetry-collector-contrib:"
    )


def test_the_images_are_tagged_with_the_project_s_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    kustomization = yaml.safe_load((REPO / "deploy/k8s/base/kustomization.yaml").read_text())
    tags = {image["name"]: image["newTag"] for image in kustomization["images"]}
    assert tags == {f"otel-chat-demo-{name}": project for name in names()}
