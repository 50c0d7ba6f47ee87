"""The Kubernetes manifests (deploy/k8s), checked without a cluster provider.

    python checks/k8s.py        # every kustomization under deploy/k8s

For each kustomization (the overlays, the base, the backends' config):

1. **render** it with ``kubectl kustomize`` (kustomize's Go module, built into kubectl);
2. **policy**: every container has liveness and readiness probes, CPU and memory
   requests and limits, a non-root user, a read-only root filesystem, no privilege
   escalation and a pinned image (a tag other than ``latest``, or a digest), and a
   third-party image is the one .env pins for compose;
3. **server**: a real kube-apiserver with its etcd, both built from the versions pinned
   in tools/kubernetes and started here on loopback for this check, takes every object
   through ``kubectl apply --server-side --dry-run=server --validate=strict``: unknown,
   duplicate or misplaced fields and invalid values are refused, and any warning fails
   the check too (a PodSecurity "restricted" violation, a deprecated API).

Environment: TOOLS_DIR (default .tools), for bin/kubectl, bin/kube-apiserver, bin/etcd.
"""

import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stack.processes import Probe, free_ports, start, stop_pid, wait_ready

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "k8s"
BIN = Path(os.environ.get("TOOLS_DIR", REPO / ".tools")).resolve() / "bin"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
# .env variables that pin a third-party image the manifests also run.
ENV_PINS = ("REDIS_IMAGE", "COLLECTOR_IMAGE")
START_DEADLINE_SECONDS = 120.0

Manifest = dict[str, Any]


# --- 1. render ---------------------------------------------------------------


def kustomizations() -> list[Path]:
    """Every kustomization folder under deploy/k8s (components excluded: they only
    render as part of another)."""
    found = []
    for path in sorted(K8S.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind", "Kustomization") == "Kustomization":
            found.append(path.parent)
    return found


@dataclass(frozen=True)
class Rendered:
    """A kustomization's output: the text kustomize wrote (what the API server gets, so
    no YAML round trip can change a value) and its objects (for the policy)."""

    text: str
    manifests: list[Manifest]


def render(folder: Path) -> Rendered:
    result = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CheckError(f"kubectl kustomize {folder.relative_to(REPO)}:\n{result.stderr}")
    return Rendered(result.stdout, [doc for doc in yaml.safe_load_all(result.stdout) if doc])


# --- 2. policy ---------------------------------------------------------------


def pinned_images(env_file: Path = REPO / ".env") -> dict[str, str]:
    """Image name -> the reference .env pins for compose (e.g. redis -> redis:8.10.2-alpine)."""
    pins = {}
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ENV_PINS:
            pins[value.rsplit(":", 1)[0]] = value
    return pins


def image_problem(image: str, pins: dict[str, str]) -> str | None:
    """What is wrong with an image reference, if anything."""
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (a registry port is not a tag)
        return f"image {image!r} has no tag: pin a version or a digest"
    if tag == "latest":
        return f"image {image!r} is not pinned: 'latest' moves"
    if name in pins and image != pins[name]:
        return f"image {image!r} differs from .env's {pins[name]!r} (compose runs that one)"
    return None


def container_problems(container: Manifest, pod_security: Manifest) -> list[str]:
    found = []
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            found.append(f"no {probe}")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                found.append(f"no {resource} {kind[:-1]}")
    security = {**pod_security, **container.get("securityContext", {})}
    if security.get("runAsNonRoot") is not True:
        found.append("runAsNonRoot is not true")
    if security.get("runAsUser") in (0, None):
        found.append("no non-root runAsUser (a numeric uid the kubelet can verify)")
    if security.get("readOnlyRootFilesystem") is not True:
        found.append("the root filesystem is writable (readOnlyRootFilesystem)")
    if security.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    return found


def policy_problems(manifests: list[Manifest], pins: dict[str, str]) -> list[str]:
    """Every policy violation in the rendered manifests, one line each."""
    found = []
    for manifest in manifests:
        if manifest.get("kind") not in WORKLOADS:
            continue
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        pod = manifest["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        for container in pod.get("initContainers", []) + pod["containers"]:
            problems = container_problems(container, pod_security)
            if problem := image_problem(container.get("image", ""), pins):
                problems.append(problem)
            found += [f"{where} container {container['name']}: {p}" for p in problems]
    return found


# --- 3. server ---------------------------------------------------------------


class CheckError(Exception):
    pass


@contextmanager
def server(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server for the duration of the block; stop it after (SIGTERM, then SIGKILL)."""
    proc = start(command, log_path=log, env={}, cwd=REPO)
    try:
        yield proc
    finally:
        stop_pid(proc.pid)


def https_ready(url: str, token: str) -> Probe:
    """Ready when the API server's ``url`` answers 200 to the admin token (its own
    self-signed certificate, on loopback: not verified)."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})

    def probe() -> bool | None:
        with urllib.request.urlopen(request, context=insecure, timeout=2) as response:
            return True if response.status == 200 else None

    return probe


@contextmanager
def api_server(workdir: Path) -> Iterator[Path]:
    """A throwaway etcd and kube-apiserver on loopback; yields a kubeconfig for it.

    Token authentication (one admin token made here) and AlwaysAllow authorization:
    the check is about what the API accepts, not about who may send it. Admission stays
    on, with PodSecurity, except ServiceAccount (no controller manager creates the
    default ServiceAccount here).
    """
    client, peer, secure = free_ports(3)
    token = secrets.token_hex(16)
    (workdir / "tokens.csv").write_text(f"{token},check-admin,check-admin,system:masters\n")
    key, public = workdir / "sa.key", workdir / "sa.pub"
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", key, "-pubout", "-out", public], check=True, capture_output=True
    )
    etcd = [
        str(BIN / "etcd"),
        "--name=check",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=check=http://127.0.0.1:{peer}",
        "--unsafe-no-fsync",  # a throwaway store: durability buys nothing here
        "--log-level=warn",
    ]
    apiserver = [
        str(BIN / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # No `kubernetes` Service endpoints to keep: they may not be loopback addresses.
        "--endpoint-reconciler-type=none",
        f"--secure-port={secure}",
        f"--cert-dir={workdir / 'certs'}",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        "--authorization-mode=AlwaysAllow",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={public}",
        f"--service-account-signing-key-file={key}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--disable-admission-plugins=ServiceAccount",
    ]
    with ExitStack() as stack:
        apiserver_log = workdir / "kube-apiserver.log"
        stack.enter_context(server(etcd, workdir / "etcd.log"))
        proc = stack.enter_context(server(apiserver, apiserver_log))
        url = f"https://127.0.0.1:{secure}"
        # /readyz: 200 once every post-start hook is done.
        ready = https_ready(f"{url}/readyz", token)
        wait_ready(
            "kube-apiserver", proc, ready, log_path=apiserver_log, timeout=START_DEADLINE_SECONDS
        )
        kubeconfig = workdir / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "check", "cluster": {"server": url, "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": "check-admin", "user": {"token": token}}],
            "contexts": [{"name": "check", "context": {"cluster": "check", "user": "check-admin"}}],
            "current-context": "check",
        }
        kubeconfig.write_text(json.dumps(config))
        yield kubeconfig


def kubectl(kubeconfig: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def create_namespaces(kubeconfig: Path, renders: list[Rendered]) -> list[str]:
    """Create, for real, every Namespace the kustomizations declare: a dry run creates
    nothing, and an object in a missing namespace is refused (PodSecurity reads the
    namespace's labels, too)."""
    namespaces = [m for r in renders for m in r.manifests if m["kind"] == "Namespace"]
    if not namespaces:
        return []
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": namespaces})
    created = kubectl(
        kubeconfig, "apply", "--server-side", "--field-manager=check-k8s", "-f", "-", stdin=listed
    )
    return [] if created.returncode == 0 else [f"creating namespaces: {created.stderr.strip()}"]


def server_problems(kubeconfig: Path, rendered: Rendered) -> list[str]:
    """What the API server refuses or warns about in a server-side dry-run apply."""
    manifests = rendered.manifests
    applied = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=check-k8s",
        "-f",
        "-",
        stdin=rendered.text,
    )
    problems = [line for line in applied.stderr.splitlines() if line.strip()]
    if applied.returncode != 0 and not problems:
        problems.append(f"kubectl apply failed ({applied.returncode})")
    accepted = len(re.findall(r"serverside-applied \(server dry run\)", applied.stdout))
    if not problems and accepted != len(manifests):
        problems.append(f"{accepted} of {len(manifests)} objects applied:\n{applied.stdout}")
    return problems


def main() -> int:
    for tool in ("kubectl", "kube-apiserver", "etcd"):
        if not (BIN / tool).is_file():
            print(f"{BIN / tool} is missing: run tools/build.sh kubernetes", file=sys.stderr)
            return 1
    failures = 0
    pins = pinned_images()
    rendered = {}
    for folder in kustomizations():
        name = str(folder.relative_to(REPO))
        try:
            rendered[name] = render(folder)
        except CheckError as exc:
            print(f"FAIL render: {exc}")
            failures += 1
            continue
        problems = policy_problems(rendered[name].manifests, pins)
        for problem in problems:
            print(f"FAIL policy {name}: {problem}")
        failures += len(problems)
        count = len(rendered[name].manifests)
        verdict = "ok" if not problems else "FAIL"
        print(f"{verdict}: {name} renders ({count} objects), {len(problems)} policy problems")
    with tempfile.TemporaryDirectory(prefix="check-k8s-") as tmp, api_server(Path(tmp)) as config:
        if problems := create_namespaces(config, list(rendered.values())):
            print(f"FAIL server: {problems[0]}")
            return 1
        for name, output in rendered.items():
            problems = server_problems(config, output)
            for problem in problems:
                print(f"FAIL server {name}: {problem}")
            failures += len(problems)
            if not problems:
                count = len(output.manifests)
                print(f"ok: {name}: the API server accepts all {count} objects (strict, dry run)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
