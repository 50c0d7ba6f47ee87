#!/usr/bin/env python3
"""The backends on Kubernetes (deploy/k8s/helm, deploy/k8s/observability) agree with the
rest of the project, without a cluster and without the charts.

    python checks/k8s_helm.py     (make check runs it)

The Helm commands are read from the Kubernetes page of the docs (docs/run/kubernetes.md,
"Backends (Helm)"), the one place they are written. Checks:

1. commands: one `helm upgrade --install` per values file in deploy/k8s/helm, each with
   a pinned `--version`, `-n otel-chat-demo`, its `-f` values file, and `--set-file`
   only for files that exist; `kubectl apply --server-side -k deploy/k8s/observability`
   runs before the first of them.
2. images: each release runs the image that .env pins for compose.
3. names and ports: the Service each chart makes (from the release name, its
   fullnameOverride and the port values, following the charts' naming rules) is the
   host:port that Grafana's data sources (deploy/grafana/provisioning/datasources) and
   the Collector's exporters (its environment in docker-compose.yml) address; and the
   ports are the ones tempo.yaml and loki.yaml listen on.
4. configs: Tempo and Loki get tempo.yaml and loki.yaml whole; the values the Loki chart
   validates (schema) are loki.yaml's; Loki's volume is mounted where loki.yaml writes;
   Prometheus runs compose's flags with prometheus.yml, and its ConfigMap items put each
   file where prometheus.yml reads it (rule_files, file_sd targets); Grafana gets
   compose's GF_* settings, the sidecars' folder is the provider file's path, and the home
   dashboard is one of the dashboards.
5. kustomize: deploy/k8s/observability (namespace otel-chat-demo) includes deploy/grafana
   and deploy/prometheus; they generate one ConfigMap per dashboard JSON file (labelled
   for the dashboards sidecar), one for the data sources (labelled for the data sources
   sidecar), the provider file, and prometheus-config; every file they name exists
   inside their directory. With kubectl available (KUBECTL, or TOOLS_DIR/bin/kubectl),
   `kubectl kustomize` renders it and the rendered ConfigMaps are checked too.

Exit status 0 when everything agrees, 1 otherwise. Standard library and PyYAML.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy/k8s"
HELM = K8S / "helm"
OBSERVABILITY = K8S / "observability"
# Where the Helm commands are written (its "Backends (Helm)" section).
COMMANDS_PAGE = REPO / "docs/run/kubernetes.md"
PAGE = COMMANDS_PAGE.relative_to(REPO)
NAMESPACE = "otel-chat-demo"
GRAFANA_DIR = REPO / "deploy/grafana"
PROMETHEUS_DIR = REPO / "deploy/prometheus"
DATASOURCES = GRAFANA_DIR / "provisioning/datasources/datasources.yaml"
PROVIDERS = GRAFANA_DIR / "provisioning/dashboards/dashboards.yaml"
TEMPO_CONFIG = REPO / "deploy/tempo/tempo.yaml"
LOKI_CONFIG = REPO / "deploy/loki/loki.yaml"
COMPOSE = REPO / "docker-compose.yml"
ENV = REPO / ".env"
DASHBOARD_LABEL = ("grafana_dashboard", "1")
DATASOURCE_LABEL = ("grafana_datasource", "1")
# Which chart each values file is for, and which image pin of .env it must run.
CHARTS = {
    "tempo": ("grafana-community/tempo", "TEMPO_IMAGE"),
    "loki": ("grafana-community/loki", "LOKI_IMAGE"),
    "prometheus": ("prometheus-community/prometheus", "PROMETHEUS_IMAGE"),
    "grafana": ("grafana-community/grafana", "GRAFANA_IMAGE"),
}
# The Collector's exporters (docker-compose.yml's otel-collector environment) and the
# release whose Service each one must reach.
COLLECTOR_ENDPOINTS = {
    "TRACES_OTLP_ENDPOINT": "tempo",
    "LOGS_OTLP_ENDPOINT": "loki",
    "METRICS_OTLP_ENDPOINT": "prometheus",
}


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def expect(self, ok: bool, message: str) -> None:
        if not ok:
            self.items.append(message)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dig(data: Any, *keys: str | int) -> Any:
    """data[k0][k1]... or None where a level is missing."""
    for key in keys:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and key < len(data)
        if not (in_dict or in_list):
            return None
        data = data[key]
    return data


def port_of(endpoint: str) -> int:
    """The port of `host:port` or of a URL."""
    if "://" not in endpoint:
        endpoint = "tcp://" + endpoint
    port = urlsplit(endpoint).port
    if port is None:
        raise ValueError(f"no port in {endpoint!r}")
    return port


def host_port(endpoint: str) -> tuple[str, int]:
    if "://" not in endpoint:
        endpoint = "tcp://" + endpoint
    parts = urlsplit(endpoint)
    return parts.hostname or "", port_of(endpoint)


# --- 1. the commands of the Kubernetes page --------------------------------------------


def page_commands(text: str) -> list[list[str]]:
    """The shell commands of the "Backends (Helm)" section's code blocks, as argv lists."""
    section = text.split("## Backends (Helm)", 1)[-1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line.split("|", 1)[0]))
    return commands


def option(argv: list[str], *names: str) -> list[str]:
    """Every value given to one of the options `names` (`-f x` or `-f=x`)."""
    values = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif arg.startswith(name + "="):
                values.append(arg.split("=", 1)[1])
    return values


def helm_releases(commands: list[list[str]], problems: Problems) -> dict[str, list[str]]:
    """release name -> its `helm upgrade --install` argv, checked against the values files."""
    releases: dict[str, list[str]] = {}
    first_helm = None
    apply_at = None
    for index, argv in enumerate(commands):
        if argv[:2] == ["kubectl", "apply"] and option(argv, "-k") == ["deploy/k8s/observability"]:
            apply_at = index if apply_at is None else apply_at
            problems.expect(
                "--server-side" in argv, f"{PAGE}: kubectl apply -k without --server-side"
            )
        if argv[:3] != ["helm", "upgrade", "--install"]:
            continue
        first_helm = index if first_helm is None else first_helm
        name, chart = argv[3], argv[4]
        problems.expect(name not in releases, f"{PAGE}: release {name} installed twice")
        releases[name] = argv
        expected_chart = CHARTS.get(name, ("?", ""))[0]
        problems.expect(
            chart == expected_chart, f"{PAGE}: {name} installs {chart}, expected {expected_chart}"
        )
        versions = option(argv, "--version")
        problems.expect(
            len(versions) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", versions[0]) is not None,
            f"{PAGE}: {name} has no pinned --version X.Y.Z",
        )
        problems.expect(
            option(argv, "-n", "--namespace") == [NAMESPACE],
            f"{PAGE}: {name} not in -n {NAMESPACE}",
        )
        problems.expect(
            option(argv, "-f", "--values") == [f"deploy/k8s/helm/{name}.yaml"],
            f"{PAGE}: {name} must use -f deploy/k8s/helm/{name}.yaml",
        )
        for pair in option(argv, "--set-file"):
            path = pair.split("=", 1)[1]
            problems.expect(
                (REPO / path).is_file(), f"{PAGE}: {name} --set-file names a missing file {path}"
            )
    files = {path.stem for path in HELM.glob("*.yaml")}
    for missing in sorted(files - set(releases)):
        problems.expect(
            False, f"{PAGE}: deploy/k8s/helm/{missing}.yaml is installed by no helm command"
        )
    for extra in sorted(set(releases) - files):
        problems.expect(
            False, f"{PAGE}: release {extra} has no values file deploy/k8s/helm/{extra}.yaml"
        )
    problems.expect(
        apply_at is not None and first_helm is not None and apply_at < first_helm,
        f"{PAGE}: `kubectl apply --server-side -k deploy/k8s/observability` must come before"
        " the helm installs",
    )
    return releases


def set_file(argv: list[str], key: str) -> str | None:
    for pair in option(argv, "--set-file"):
        name, _, path = pair.partition("=")
        if name == key:
            return path
    return None


# --- 2. images ---------------------------------------------------------------------------


def env_pins() -> dict[str, str]:
    pins = {}
    for line in ENV.read_text().splitlines():
        match = re.fullmatch(r"([A-Z_]+)=(\S+)", line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def normalise_image(image: str) -> str:
    """`grafana/tempo:3.0.3`, whether or not it is written with docker.io/."""
    return image.removeprefix("docker.io/")


def chart_image(release: str, values: dict[str, Any]) -> str:
    if release == "tempo":
        tempo = values.get("tempo") or {}
        return f"{tempo.get('registry', '')}/{tempo.get('repository')}:{tempo.get('tag')}"
    if release == "loki":
        image = dig(values, "loki", "image") or {}
        return f"{image.get('registry', '')}/{image.get('repository')}:{image.get('tag')}"
    if release == "prometheus":
        image = dig(values, "server", "image") or {}
        return f"{image.get('repository')}:{image.get('tag')}"
    image = values.get("image") or {}
    return f"{image.get('registry', '')}/{image.get('repository')}:{image.get('tag')}"


# --- 3. Service names and ports ------------------------------------------------------------


def fullname(release: str, chart: str, override: str | None) -> str:
    """The charts' common `fullname` rule: the override, else the release name when it
    contains the chart's name, else <release>-<chart>."""
    if override:
        return override
    return release if chart in release else f"{release}-{chart}"


def services(values: dict[str, dict[str, Any]]) -> dict[str, tuple[str, set[int]]]:
    """release -> (Service name, its ports), as each chart renders them."""
    tempo, loki, prometheus, grafana = (
        values.get(n, {}) for n in ("tempo", "loki", "prometheus", "grafana")
    )
    tempo_ports = {int(dig(tempo, "tempo", "server", "http_listen_port") or 3200)}
    for protocol in ("grpc", "http"):  # templates/_ports.tpl: a port per configured receiver
        endpoint = dig(tempo, "tempo", "receivers", "otlp", "protocols", protocol, "endpoint")
        if endpoint:
            tempo_ports.add(port_of(endpoint))
    # prometheus: the server's own name rule (prometheus.server.fullname) is
    # <release>-server unless server.fullnameOverride is set.
    server = prometheus.get("server") or {}
    prometheus_name = server.get("fullnameOverride") or "prometheus-server"
    return {
        "tempo": (fullname("tempo", "tempo", tempo.get("fullnameOverride")), tempo_ports),
        # templates/_service.tpl: the monolithic Service always listens on 3100.
        "loki": (fullname("loki", "loki", loki.get("fullnameOverride")), {3100}),
        "prometheus": (prometheus_name, {int(dig(server, "service", "servicePort") or 80)}),
        "grafana": (
            fullname("grafana", "grafana", grafana.get("fullnameOverride")),
            {int(dig(grafana, "service", "port") or 80)},
        ),
    }


def check_addresses(rendered: dict[str, tuple[str, set[int]]], problems: Problems) -> None:
    by_type = {"tempo": "tempo", "loki": "loki", "prometheus": "prometheus"}
    for source in load(DATASOURCES).get("datasources") or []:
        release = by_type.get(source.get("type"))
        if release is None:
            continue
        host, port = host_port(source["url"])
        name, ports = rendered[release]
        problems.expect(
            host == name and port in ports,
            f"datasources.yaml: {source['name']} at {host}:{port},"
            f" but release {release} serves {name}:{sorted(ports)}",
        )
    environment = dig(load(COMPOSE), "services", "otel-collector", "environment") or {}
    for variable, release in COLLECTOR_ENDPOINTS.items():
        value = environment.get(variable)
        if value is None:
            problems.expect(False, f"docker-compose.yml: otel-collector has no {variable}")
            continue
        host, port = host_port(value)
        name, ports = rendered[release]
        problems.expect(
            host == name and port in ports,
            f"Collector {variable}={value}, but release {release} serves {name}:{sorted(ports)}",
        )
    name, ports = rendered["grafana"]
    problems.expect(
        (name, ports) == ("grafana", {3000}),
        f"grafana: Service {name}:{sorted(ports)}, compose has grafana:3000",
    )


# --- 4. configs -----------------------------------------------------------------------------


def check_tempo(values: dict[str, Any], argv: list[str], problems: Problems) -> None:
    problems.expect(
        set_file(argv, "config") == "deploy/tempo/tempo.yaml",
        "tempo: not run with --set-file config=deploy/tempo/tempo.yaml",
    )
    config = load(TEMPO_CONFIG)
    problems.expect(
        dig(values, "tempo", "server", "http_listen_port")
        == dig(config, "server", "http_listen_port"),
        "tempo: tempo.server.http_listen_port differs from tempo.yaml's",
    )
    problems.expect(
        dig(values, "tempo", "receivers") == dig(config, "distributor", "receivers"),
        "tempo: tempo.receivers (the Service's ports) differ from tempo.yaml's"
        " distributor.receivers",
    )
    for probe in ("livenessProbe", "readinessProbe"):
        port = dig(values, "tempo", probe, "httpGet", "port")
        problems.expect(
            port in (None, dig(config, "server", "http_listen_port")),
            f"tempo: {probe} on port {port}",
        )
    problems.expect(
        dig(values, "persistence", "enabled") is True,
        "tempo: persistence off (/var/tempo would be lost)",
    )


def check_loki(values: dict[str, Any], argv: list[str], problems: Problems) -> None:
    problems.expect(
        set_file(argv, "loki.config") == "deploy/loki/loki.yaml",
        "loki: not run with --set-file loki.config=deploy/loki/loki.yaml",
    )
    config = load(LOKI_CONFIG)
    problems.expect(
        values.get("deploymentMode") in ("Monolithic", "SingleBinary"),
        "loki: deploymentMode is not Monolithic",
    )
    problems.expect(
        dig(values, "singleBinary", "replicas") == 1, "loki: singleBinary.replicas is not 1"
    )
    for key in ("http_listen_port", "grpc_listen_port"):
        problems.expect(
            dig(values, "loki", "server", key) == dig(config, "server", key),
            f"loki: loki.server.{key} differs from loki.yaml's",
        )
    problems.expect(
        dig(values, "loki", "schemaConfig", "configs") == dig(config, "schema_config", "configs"),
        "loki: loki.schemaConfig differs from loki.yaml's schema_config",
    )
    problems.expect(
        dig(values, "loki", "storage", "type") == "filesystem",
        "loki: loki.storage.type is not filesystem",
    )
    for component in ("backend", "read", "write"):
        problems.expect(
            dig(values, component, "replicas") == 0, f"loki: {component}.replicas is not 0"
        )
    mounts = {
        m.get("mountPath"): m.get("name")
        for m in dig(values, "singleBinary", "extraVolumeMounts") or []
    }
    volumes = {v.get("name"): v for v in dig(values, "singleBinary", "extraVolumes") or []}
    prefix = dig(config, "common", "path_prefix")
    name = mounts.get(prefix)
    claim = dig(volumes.get(name or ""), "persistentVolumeClaim", "claimName")
    problems.expect(
        claim is not None, f"loki: no volume claim mounted at loki.yaml's path_prefix {prefix}"
    )
    claims = [
        d for d in kustomize_resources(OBSERVABILITY) if d.get("kind") == "PersistentVolumeClaim"
    ]
    problems.expect(
        any(dig(d, "metadata", "name") == claim for d in claims),
        f"loki: claim {claim} is not in deploy/k8s/observability",
    )


def compose_prometheus_flags() -> dict[str, str]:
    command = dig(load(COMPOSE), "services", "prometheus", "command") or []
    flags = {}
    for arg in command:
        name, _, value = arg.removeprefix("--").partition("=")
        flags[name] = value
    return flags


def check_prometheus(values: dict[str, Any], problems: Problems) -> None:
    server = values.get("server") or {}
    flags = compose_prometheus_flags()
    extra = {
        flag.partition("=")[0]: flag.partition("=")[2] for flag in server.get("extraFlags") or []
    }
    for name, value in flags.items():
        if name in ("config.file", "storage.tsdb.path"):
            continue  # the chart's own (configPath, persistentVolume.mountPath)
        if name == "storage.tsdb.retention.time":
            problems.expect(
                server.get("retention") == value,
                f"prometheus: retention {server.get('retention')}, compose {value}",
            )
            continue
        problems.expect(
            extra.get(name) == value,
            f"prometheus: compose's --{name}{'=' + value if value else ''}"
            " is not in server.extraFlags",
        )
    problems.expect(
        "web.enable-lifecycle" in extra,
        "prometheus: web.enable-lifecycle dropped (the config reloader needs it)",
    )
    # The config: prometheus-config mounted with items that rebuild prometheus.yml's layout.
    problems.expect(
        f"prometheus-{server.get('configMapOverrideName')}" == "prometheus-config",
        "prometheus: server.configMapOverrideName must make the config-volume prometheus-config",
    )
    config_path = Path(server.get("configPath") or "/etc/config/prometheus.yml")
    mounts = {m.get("name"): m.get("mountPath") for m in server.get("extraVolumeMounts") or []}
    layout: dict[str, str] = {}
    for volume in server.get("extraVolumes") or []:
        if dig(volume, "configMap", "name") == "prometheus-config" and mounts.get(
            volume["name"]
        ) == str(config_path.parent):
            layout = {item["path"]: item["key"] for item in dig(volume, "configMap", "items") or []}
    problems.expect(
        layout.get(config_path.name) == "prometheus.yml",
        f"prometheus: nothing puts prometheus.yml at {config_path}",
    )
    generated = prometheus_config_map()
    sources = {Path(f).name: PROMETHEUS_DIR / f for f in generated}
    for key in layout.values():
        problems.expect(key in sources, f"prometheus: item {key} is not a key of prometheus-config")
    config = load(PROMETHEUS_DIR / "prometheus.yml")
    wanted = list(config.get("rule_files") or [])
    for job in config.get("scrape_configs") or []:
        for sd in job.get("file_sd_configs") or []:
            wanted.extend(sd.get("files") or [])
    for pattern in wanted:
        matches = [path for path in layout if Path(path).match(pattern)]
        problems.expect(
            bool(matches),
            f"prometheus: prometheus.yml reads {pattern}, which the mounted items do not provide",
        )
    problems.expect(
        sources.get("alerts.yml") == PROMETHEUS_DIR / "rules/alerts.yml",
        "prometheus: prometheus-config lacks rules/alerts.yml",
    )


def check_grafana(values: dict[str, Any], problems: Problems) -> None:
    compose_env = dig(load(COMPOSE), "services", "grafana", "environment") or {}
    expected = {k: str(v) for k, v in compose_env.items() if not k.startswith("GF_SECURITY_ADMIN_")}
    actual = {k: str(v) for k, v in (values.get("env") or {}).items()}
    problems.expect(
        actual == expected,
        "grafana: env differs from compose's GF_* settings:"
        f" {sorted(set(actual.items()) ^ set(expected.items()))}",
    )
    sidecar = values.get("sidecar") or {}
    for kind, label in (("dashboards", DASHBOARD_LABEL), ("datasources", DATASOURCE_LABEL)):
        problems.expect(dig(sidecar, kind, "enabled") is True, f"grafana: sidecar.{kind} is off")
        problems.expect(
            (dig(sidecar, kind, "label"), str(dig(sidecar, kind, "labelValue"))) == label,
            f"grafana: sidecar.{kind} does not select {label[0]}={label[1]}",
        )
    folder = dig(sidecar, "dashboards", "folder")
    problems.expect(
        dig(sidecar, "dashboards", "SCProvider") is False,
        "grafana: the chart's provider replaces the project's (SCProvider)",
    )
    paths = [dig(p, "options", "path") for p in load(PROVIDERS).get("providers") or []]
    problems.expect(
        folder in paths, f"grafana: sidecar folder {folder} is no provider's path {paths}"
    )
    mounted = [
        m
        for m in values.get("extraConfigmapMounts") or []
        if m.get("configMap") == "grafana-dashboard-provider"
        and m.get("mountPath") == f"/etc/grafana/provisioning/dashboards/{PROVIDERS.name}"
        and m.get("subPath") == PROVIDERS.name
    ]
    problems.expect(
        bool(mounted),
        "grafana: the provider file is not mounted into /etc/grafana/provisioning/dashboards",
    )
    home = Path(str(actual.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")))
    problems.expect(
        str(home.parent) == folder and (GRAFANA_DIR / "dashboards" / home.name).is_file(),
        f"grafana: the home dashboard {home} is not a dashboard in the sidecar's folder {folder}",
    )
    problems.expect(
        dig(values, "containerSecurityContext", "readOnlyRootFilesystem") is False,
        "grafana: read-only root (Grafana 13.2 rewrites its bundled plugins)",
    )


# --- 5. kustomize ---------------------------------------------------------------------------


def kustomize_resources(directory: Path) -> list[dict[str, Any]]:
    """The plain resources (files) a kustomization and those it includes list."""
    kustomization = load(directory / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources") or []:
        path = (directory / resource).resolve()
        if path.is_dir():
            docs.extend(kustomize_resources(path))
        elif path.is_file():
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def generators(directory: Path, problems: Problems) -> dict[str, dict[str, Any]]:
    """ConfigMap name -> {"files": {key: path}, "labels": {...}} over a kustomization tree."""
    kustomization = load(directory / "kustomization.yaml")
    found: dict[str, dict[str, Any]] = {}
    hashless = dig(kustomization, "generatorOptions", "disableNameSuffixHash") is True
    for entry in kustomization.get("configMapGenerator") or []:
        name = entry["name"]
        problems.expect(
            hashless or dig(entry, "options", "disableNameSuffixHash") is True,
            f"{name}: name gets a hash suffix",
        )
        files = {}
        for spec in entry.get("files") or []:
            key, _, source = spec.rpartition("=")
            path = (directory / source).resolve()
            problems.expect(
                path.is_file(), f"{directory.relative_to(REPO)}: {source} does not exist"
            )
            problems.expect(
                path.is_relative_to(directory.resolve()),
                f"{directory.relative_to(REPO)}: {source} is outside its root",
            )
            files[key or Path(source).name] = path
        found[name] = {"files": files, "labels": dig(entry, "options", "labels") or {}}
    for resource in kustomization.get("resources") or []:
        path = (directory / resource).resolve()
        if path.is_dir():
            found.update(generators(path, problems))
    return found


def prometheus_config_map() -> list[str]:
    kustomization = load(PROMETHEUS_DIR / "kustomization.yaml")
    for entry in kustomization.get("configMapGenerator") or []:
        if entry["name"] == "prometheus-config":
            return [spec.rpartition("=")[2] for spec in entry.get("files") or []]
    return []


def check_kustomize(problems: Problems) -> dict[str, dict[str, Any]]:
    top = load(OBSERVABILITY / "kustomization.yaml")
    problems.expect(
        top.get("namespace") == NAMESPACE, f"observability: namespace is not {NAMESPACE}"
    )
    resources = [(OBSERVABILITY / r).resolve() for r in top.get("resources") or []]
    for directory in (GRAFANA_DIR, PROMETHEUS_DIR):
        problems.expect(
            directory.resolve() in resources,
            f"observability: does not include {directory.relative_to(REPO)}",
        )
    maps = generators(OBSERVABILITY, problems)
    expected_files = {"grafana-datasources": DATASOURCES, "grafana-dashboard-provider": PROVIDERS}
    for dashboard in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        expected_files[f"grafana-dashboard-{dashboard.stem}"] = dashboard
    for name, path in expected_files.items():
        entry = maps.get(name)
        if entry is None:
            problems.expect(
                False,
                f"deploy/grafana/kustomization.yaml: no ConfigMap {name}"
                f" for {path.relative_to(REPO)}",
            )
            continue
        problems.expect(
            list(entry["files"].values()) == [path.resolve()],
            f"{name}: must hold exactly {path.relative_to(REPO)}",
        )
    for name, entry in maps.items():
        dashboards = [p for p in entry["files"].values() if p.suffix == ".json"]
        label = (
            DATASOURCE_LABEL
            if name == "grafana-datasources"
            else DASHBOARD_LABEL
            if dashboards
            else None
        )
        if label:
            problems.expect(
                entry["labels"].get(label[0]) == label[1],
                f'{name}: not labelled {label[0]}: "{label[1]}"',
            )
        elif name.startswith("grafana-"):
            problems.expect(
                not set(entry["labels"]) & {DASHBOARD_LABEL[0], DATASOURCE_LABEL[0]},
                f"{name}: labelled for a sidecar",
            )
    problems.expect(
        "prometheus-config" in maps,
        "deploy/prometheus/kustomization.yaml: no ConfigMap prometheus-config",
    )
    return maps


def kubectl() -> str | None:
    candidates = [
        os.environ.get("KUBECTL"),
        str(Path(os.environ.get("TOOLS_DIR", REPO / ".tools")) / "bin/kubectl"),
    ]
    # Not any kubectl on PATH: its embedded kustomize may be another version than the
    # pinned one (tools/kubernetes) that checks/k8s.py renders with.
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_rendered(maps: dict[str, dict[str, Any]], problems: Problems) -> bool:
    """`kubectl kustomize` agrees with the structural reading. False when kubectl is missing."""
    binary = kubectl()
    if binary is None:
        return False
    # S603: the command is kubectl from $KUBECTL or TOOLS_DIR, on our own directory.
    result = subprocess.run(  # noqa: S603
        [binary, "kustomize", str(OBSERVABILITY)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        problems.expect(
            False, f"kubectl kustomize deploy/k8s/observability failed: {result.stderr.strip()}"
        )
        return True
    rendered = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(result.stdout)
        if d and d.get("kind") == "ConfigMap"
    }
    problems.expect(
        set(rendered) == set(maps),
        f"kubectl kustomize: ConfigMaps {sorted(rendered)} != {sorted(maps)}",
    )
    for name, entry in maps.items():
        doc = rendered.get(name) or {}
        problems.expect(
            dig(doc, "metadata", "namespace") == NAMESPACE,
            f"kubectl kustomize: {name} not in {NAMESPACE}",
        )
        data = doc.get("data") or {}
        for key, path in entry["files"].items():
            problems.expect(
                data.get(key) == path.read_text(),
                f"kubectl kustomize: {name}[{key}] is not {path.relative_to(REPO)}",
            )
        for label, value in entry["labels"].items():
            problems.expect(
                dig(doc, "metadata", "labels", label) == value,
                f"kubectl kustomize: {name} lacks label {label}",
            )
    return True


def main() -> int:
    problems = Problems()
    values = {path.stem: load(path) or {} for path in sorted(HELM.glob("*.yaml"))}
    releases = helm_releases(page_commands(COMMANDS_PAGE.read_text()), problems)

    pins = env_pins()
    for release, data in values.items():
        pin = pins.get(CHARTS.get(release, ("", ""))[1], "?")
        image = chart_image(release, data)
        problems.expect(
            normalise_image(image.lstrip("/")) == normalise_image(pin),
            f"{release}: runs {image}, .env pins {pin}",
        )

    check_addresses(services(values), problems)
    if "tempo" in releases:
        check_tempo(values["tempo"], releases["tempo"], problems)
    if "loki" in releases:
        check_loki(values["loki"], releases["loki"], problems)
    check_prometheus(values.get("prometheus", {}), problems)
    check_grafana(values.get("grafana", {}), problems)
    maps = check_kustomize(problems)
    rendered = check_rendered(maps, problems)

    for item in problems.items:
        print(f"FAIL {item}")
    if problems.items:
        return 1
    how = "rendered with kubectl kustomize" if rendered else "read structurally (no kubectl)"
    print(
        f"ok: {len(values)} Helm releases and {len(maps)} ConfigMaps ({how})"
        " agree with the project's files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
