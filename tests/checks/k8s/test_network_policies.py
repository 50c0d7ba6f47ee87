"""Who may connect to whom, worked out from the rendered NetworkPolicies the way a
network plugin enforces them (ingress: a pod selected by any policy accepts only what
one of them allows). The API server checks each policy's form, not what they add up to."""

from typing import Any

import pytest

from checks.k8s import K8S, Manifest, render

NAMESPACE = "otel-chat-demo"
# Pods that are not ours but may knock: the backends' Prometheus (its chart's label) and
# Grafana, and anything in another namespace (an ingress controller, another team).
OTHERS = {
    "prometheus": ({"app.kubernetes.io/name": "prometheus"}, NAMESPACE),
    "grafana": ({"app.kubernetes.io/name": "grafana"}, NAMESPACE),
    "outside": ({"app": "ingress-nginx"}, "ingress-nginx"),
}
EVERYONE = {"gateway", "chat", "cache", "redis", "redis-limits", "otel-collector", *OTHERS}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    assert not selector.get("matchExpressions"), "extend matches() for matchExpressions"
    return all(labels.get(key) == value for key, value in wanted.items())


def peer_allowed(peer: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    assert "ipBlock" not in peer, "extend peer_allowed() for ipBlock"
    if "namespaceSelector" in peer:
        return False  # none of ours selects other namespaces (extend if one does)
    return namespace == NAMESPACE and matches(peer["podSelector"], labels)


def allowed_sources(
    policies: list[Manifest], pods: dict[str, tuple[dict[str, str], str]], target: str, port: str
) -> set[str]:
    target_labels = pods[target][0]
    selecting = [
        p
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"]
        and matches(p["spec"]["podSelector"], target_labels)
    ]
    if not selecting:
        return set(pods)  # not isolated: anyone
    sources = set()
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            for name, (labels, namespace) in pods.items():
                peers = rule.get("from")
                if peers is None or any(peer_allowed(p, labels, namespace) for p in peers):
                    sources.add(name)
    return sources


@pytest.fixture(scope="module", params=["dev", "production"])
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / "overlays" / request.param).manifests


@pytest.mark.parametrize(
    ("target", "port", "expected"),
    [
        ("gateway", "http", EVERYONE),
        ("chat", "http", {"gateway"}),
        ("cache", "http", {"chat"}),
        # Each Redis from its one client: the data from the cache, the limits from the
        # gateway (never the other way round: no chat data can reach the limits).
        ("redis", "redis", {"cache"}),
        ("redis-limits", "redis", {"gateway"}),
        ("otel-collector", "otlp-grpc", {"gateway", "chat", "cache"}),
        ("otel-collector", "otlp-http", {"gateway", "chat", "cache"}),
        ("otel-collector", "metrics", {"prometheus"}),
        ("otel-collector", "health", set()),  # kubelet probes are not pod traffic
    ],
)
def test_who_may_connect(
    rendered: list[Manifest], target: str, port: str, expected: set[str]
) -> None:
    ours = {
        m["metadata"]["name"]: (m["spec"]["template"]["metadata"]["labels"], NAMESPACE)
        for m in rendered
        if m["kind"] in ("Deployment", "StatefulSet")
    }
    policies = [m for m in rendered if m["kind"] == "NetworkPolicy"]
    assert allowed_sources(policies, {**ours, **OTHERS}, target, port) == expected
