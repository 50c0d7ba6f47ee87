"""checks/k8s.py's API server half can fail: a real kube-apiserver (with etcd,
from tools/kubernetes) accepts the dev overlay as rendered and refuses each kind of
mistake the check exists to catch."""

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.k8s import (
    K8S,
    Manifest,
    Rendered,
    api_server,
    create_namespaces,
    render,
    server_problems,
)


@pytest.fixture(scope="module")
def dev() -> Rendered:
    return render(K8S / "overlays" / "dev")


@pytest.fixture(scope="module")
def kubeconfig(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with api_server(tmp_path_factory.mktemp("apiserver")) as config:
        assert create_namespaces(config, [dev]) == []
        yield config


def first(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    return next(
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    )


def chat_container(manifests: list[Manifest]) -> dict[str, Any]:
    container: dict[str, Any] = first(manifests, "Deployment", "chat")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def test_the_dev_overlay_is_accepted(kubeconfig: Path, dev: Rendered) -> None:
    assert server_problems(kubeconfig, dev) == []


def unknown_field(m: list[Manifest]) -> None:
    chat_container(m)["livenessprobe"] = {"httpGet": {"port": 1}}  # misspelt


def misplaced_field(m: list[Manifest]) -> None:
    first(m, "NetworkPolicy")["spec"]["matchLabels"] = {"a": "b"}  # belongs in podSelector


def invalid_value(m: list[Manifest]) -> None:
    chat_container(m)["ports"][0]["containerPort"] = 70000


def selector_mismatch(m: list[Manifest]) -> None:
    first(m, "Deployment", "chat")["spec"]["selector"]["matchLabels"] = {
        "app.kubernetes.io/name": "other"
    }


def root_user(m: list[Manifest]) -> None:
    first(m, "Deployment", "chat")["spec"]["template"]["spec"]["securityContext"][
        "runAsNonRoot"
    ] = False


def removed_api(m: list[Manifest]) -> None:
    first(m, "HorizontalPodAutoscaler")["apiVersion"] = "autoscaling/v2beta2"


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        (unknown_field, "field not declared in schema"),
        (misplaced_field, "field not declared in schema"),
        (invalid_value, "must be between 1 and 65535"),
        (selector_mismatch, "`selector` does not match template `labels`"),
        (root_user, 'would violate PodSecurity "restricted:latest"'),
        (removed_api, "no matches for kind"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_mistake_is_refused(
    kubeconfig: Path,
    dev: Rendered,
    mistake: Callable[[list[Manifest]], None],
    expected: str,
) -> None:
    manifests = copy.deepcopy(dev.manifests)
    mistake(manifests)
    problems = server_problems(kubeconfig, Rendered(yaml.safe_dump_all(manifests), manifests))
    assert any(expected in problem for problem in problems), problems
