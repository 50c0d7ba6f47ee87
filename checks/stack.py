#!/usr/bin/env python3
"""Consistency checks of the container stack that no upstream tool makes.

    python3 checks/stack.py

1. Pins (.env): every *_IMAGE has an explicit tag other than `latest`, and every pin
   (images and UV_VERSION) cites where its release is published: the comment right
   above it carries a URL and the pinned version. The Prometheus image is the release
   the native toolchain builds (tools/prometheus/go.mod: module v0.3XX.Y is Prometheus
   v3.XX.Y); the Collector image is the release of otel-collector/builder-config.yaml;
   UV_VERSION is the Makefile's.
2. Compose ↔ Collector config: every ${env:VAR} that otel-collector/config.yaml needs
   without a default is set on the otel-collector service, and docker-compose.yml sets
   no variable that the config never reads (a typo would otherwise go unnoticed).
3. Tempo 3 and Loki 3.7 configs (no binaries of theirs are built here): none of the
   blocks Tempo 3 removed and rejects at start (ingester, compactor, ...), receivers
   bound to 0.0.0.0; Loki on TSDB schema v13 with structured metadata (OTLP needs both),
   its built-in OTLP index labels off (they include service.instance.id) and only
   explicit ones on, which the Loki queries of Grafana select by.
4. Docker Engine and Compose: stack/stack.sh checks the versions that the compose
   file's features need before `make up` builds anything, and the README and the
   Docker stack's page (docs/run/docker.md) state them.
5. One `docker compose up` command line: the one stack/stack.sh runs is the one
   docker-compose.yml's header and the Docker stack's page quote, and every other
   page or the README that quotes one quotes it too.
6. Stop grace periods: each service that needs longer than Compose's default 10 s to
   shut down cleanly has a stop_grace_period that covers it.
7. Grafana: nothing that needs a plugin download or breaks its bundled data source
   plugins (read-only root filesystem, plugin installs, plugin auto-updates).
8. Trace ids in Loki queries: a Grafana variable that holds a trace id may come from
   Tempo's search, which drops leading zeros, so it is matched as `trace_id=~"0*$var"`.
9. One configuration per Redis: the data Redis and the limits Redis, in compose and
   natively (stack.redis_servers' command lines, which the tests use too), each
   run their own file (deploy/redis/redis.conf, redis-limits.conf) and set nothing of
   their own but where to listen, keep data and find the users (--aclfile, a secret);
   the files keep the settings that make acknowledged turns durable (the data Redis'
   append-only file) and evict nothing in either (noeviction: not a history with an
   idle TTL, not a live rate-limit counter), with a memory bound; both compose
   containers run as a non-root user, read-only, with every capability dropped.

Exit status 0 when all pass, 1 otherwise. Standard library plus PyYAML.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
STACK_SH = REPO / "stack" / "stack.sh"
# Where a reader learns which Docker versions `make up` needs, and what it runs.
VERSIONS_STATED_IN = ("README.md", "docs/run/docker.md")
UP_QUOTED_IN = ("docker-compose.yml", "docs/run/docker.md")
problems: list[str] = []


def fail(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def read_env(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of a .env file (quotes removed; no interpolation needed here)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None without one); a digest also counts as pinned."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def pin_comments(path: Path) -> dict[str, str]:
    """For each KEY=VALUE line, the comment lines directly above it, joined."""
    comments: dict[str, str] = {}
    block: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#"):
            block.append(line.lstrip("# "))
        elif "=" in line:
            comments[line.split("=", 1)[0].strip()] = " ".join(block)
            block = []
        else:
            block = []
    return comments


def check_pins() -> None:
    where = ".env"
    env = read_env(REPO / ".env")
    images = {k: v for k, v in env.items() if k.endswith("_IMAGE")}
    if not images:
        fail(where, "no *_IMAGE entries")
    for key, image in images.items():
        tag = image_tag(image)
        if not tag or tag == "latest":
            fail(where, f"{key}={image} is not pinned to a version")

    # Every pin says where its release is published (release notes, changelog), so a
    # tag that was never released (it happened: grafana/loki:3.7.8) cannot slip in
    # unnoticed, and a bump has to touch the source too.
    comments = pin_comments(REPO / ".env")
    for key, value in {**images, "UV_VERSION": env.get("UV_VERSION", "")}.items():
        version = re.search(r"\d+(?:\.\d+)+", image_tag(value) or value)
        comment = comments.get(key, "")
        if version is None:
            fail(where, f"{key}={value}: no version number in it")
        elif "https://" not in comment or version.group() not in comment:
            fail(
                where,
                f"{key}={value}: the comment right above it must cite the release "
                f"(an https:// URL of its release notes or changelog, and {version.group()})",
            )
    makefile = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    if makefile is None or makefile.group(1) != env.get("UV_VERSION"):
        fail(where, f"UV_VERSION={env.get('UV_VERSION')} differs from the Makefile's UV_VERSION")

    # Prometheus: same release as the native build.
    gomod = REPO / "tools" / "prometheus" / "go.mod"
    match = (
        re.search(
            r"github\.com/prometheus/prometheus v0\.(\d)(\d\d)\.(\d+)",
            gomod.read_text(encoding="utf-8"),
        )
        if gomod.exists()
        else None
    )
    if match is None:
        fail(
            str(gomod.relative_to(REPO)),
            "no github.com/prometheus/prometheus v0.3XX.Y requirement found",
        )
    else:
        expected = f"v{match.group(1)}.{int(match.group(2))}.{match.group(3)}"
        got = image_tag(env.get("PROMETHEUS_IMAGE", ""))
        if got != expected:
            fail(
                where,
                f"PROMETHEUS_IMAGE tag {got} != {expected}, "
                "the release tools/prometheus/go.mod builds",
            )

    # Collector: same release as the OCB manifest, whose dist.version is the release of
    # the contrib distribution it mirrors (image tags carry no `v`).
    manifest = REPO / "otel-collector" / "builder-config.yaml"
    where_manifest = str(manifest.relative_to(REPO))
    if not manifest.exists():
        fail(where_manifest, "missing, cannot compare COLLECTOR_IMAGE with it")
        return
    text = manifest.read_text(encoding="utf-8")
    dist_version = str(((yaml.safe_load(text) or {}).get("dist") or {}).get("version", "")).lstrip(
        "v"
    )
    # v0.MINOR.PATCH of every component, except local ones (v0.0.0).
    minors = set(re.findall(r" v(0\.\d+)\.\d+\s*$", text, flags=re.M)) - {"0.0"}
    got = image_tag(env.get("COLLECTOR_IMAGE", "")) or ""
    if not dist_version:
        fail(where_manifest, "no dist.version")
    elif got != dist_version:
        fail(where, f"COLLECTOR_IMAGE tag {got} != dist.version {dist_version} of {where_manifest}")
    if len(minors) > 1:
        fail(where_manifest, f"components of several releases: {sorted(minors)}")


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        fail(str(path.relative_to(REPO)), f"cannot read: {exc}")
        return None


def check_collector_env() -> None:
    config_path = REPO / "otel-collector" / "config.yaml"
    if not config_path.exists():
        fail(str(config_path.relative_to(REPO)), "missing")
        return
    config_text = config_path.read_text(encoding="utf-8")
    # ${env:NAME} or ${env:NAME:-default}; `$$` is a literal dollar, not a reference.
    refs = {
        m.group(1): m.group(2) is not None
        for m in re.finditer(r"(?<!\$)\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}", config_text)
    }
    compose = load_yaml(REPO / "docker-compose.yml")
    if not compose:
        return
    service = compose.get("services", {}).get("otel-collector", {})
    environment = service.get("environment", {}) or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    runtime = {"GOMEMLIMIT", "GOMAXPROCS", "GOGC"}  # read by the Go runtime, not the config
    for name, has_default in sorted(refs.items()):
        if not has_default and name not in environment:
            fail(
                "docker-compose.yml",
                f"otel-collector needs {name} (used without default in config.yaml)",
            )
    for name in sorted(set(environment) - set(refs) - runtime):
        fail(
            "docker-compose.yml",
            f"otel-collector sets {name}, which otel-collector/config.yaml never reads",
        )


def check_tempo() -> None:
    path = REPO / "deploy" / "tempo" / "tempo.yaml"
    config = load_yaml(path)
    if not isinstance(config, dict):
        return
    where = str(path.relative_to(REPO))
    removed = {"ingester", "ingester_client", "compactor", "metrics_generator_client"}
    for key in sorted(removed & set(config)):
        fail(where, f"`{key}:` was removed in Tempo 3; Tempo refuses to start with it")
    processor = (config.get("metrics_generator") or {}).get("processor") or {}
    if "local_blocks" in processor:
        fail(where, "metrics_generator.processor.local_blocks was removed in Tempo 3")
    protocols = (((config.get("distributor") or {}).get("receivers") or {}).get("otlp") or {}).get(
        "protocols"
    ) or {}
    if "grpc" not in protocols:
        fail(where, "no OTLP/gRPC receiver (the Collector exports traces over gRPC)")
    for name, proto in protocols.items():
        endpoint = (proto or {}).get("endpoint", "")
        if not str(endpoint).startswith("0.0.0.0:"):
            fail(where, f"OTLP {name} receiver endpoint {endpoint!r}: bind 0.0.0.0 in a container")


# Resource attributes that differ per process: never Loki index labels.
PER_PROCESS_ATTRIBUTES = {"service.instance.id", "process.pid"}


def check_loki() -> None:
    path = REPO / "deploy" / "loki" / "loki.yaml"
    config = load_yaml(path)
    if not isinstance(config, dict):
        return
    where = str(path.relative_to(REPO))
    schemas = (config.get("schema_config") or {}).get("configs") or []
    if not schemas:
        fail(where, "no schema_config.configs")
    else:
        latest = max(schemas, key=lambda s: str(s.get("from")))
        if latest.get("store") != "tsdb" or latest.get("schema") != "v13":
            fail(
                where,
                "the newest schema must be store: tsdb, schema: v13 "
                "(structured metadata, and so OTLP, needs it)",
            )
    limits = config.get("limits_config") or {}
    if limits.get("allow_structured_metadata") is False:
        fail(where, "allow_structured_metadata is off: OTLP pushes would be rejected")

    # Which OTLP resource attributes become index labels. Loki applies its built-in list
    # (service.instance.id among them) before attributes_config and the first match
    # wins, so only ignore_defaults plus explicit index_label rules demote an attribute.
    resource = (limits.get("otlp_config") or {}).get("resource_attributes") or {}
    if resource.get("ignore_defaults") is not True:
        fail(
            where,
            "limits_config.otlp_config.resource_attributes.ignore_defaults must be true: "
            "Loki's built-in index labels (service.instance.id among them) apply before "
            "attributes_config, so no rule there can demote them",
        )
        return
    indexed: set[str] = set()
    for rule in resource.get("attributes_config") or []:
        if rule.get("action") != "index_label":
            continue
        if rule.get("regex"):
            fail(where, f"index_label by regex {rule['regex']!r}: name the attributes instead")
        indexed.update(rule.get("attributes") or [])
    for attribute in sorted(indexed & PER_PROCESS_ATTRIBUTES):
        fail(where, f"{attribute} is an index label: a new stream for every process")
    labels = {attribute.replace(".", "_") for attribute in indexed}
    for query_where, label in sorted(grafana_loki_selector_labels()):
        if label not in labels:
            fail(query_where, f"selects Loki streams by {label}, which {where} does not index")


# Compose file features → (Docker Engine, its API version, Docker Compose) they need.
# start_interval: moby 25.0 (API 1.44) added it; Compose passes it on since v2.24.1
# (docker/compose#11360); an older engine refuses it only after building every image.
FEATURE_NEEDS = {"healthcheck.start_interval": ("25.0", "1.44", "2.24.1")}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def shell_assignment(text: str, name: str) -> str | None:
    match = re.search(rf"^{name}=(\S+)", text, re.M)
    return match.group(1) if match else None


def compose_features(compose: dict[str, Any]) -> set[str]:
    features = set()
    for service in (compose.get("services") or {}).values():
        if "start_interval" in ((service or {}).get("healthcheck") or {}):
            features.add("healthcheck.start_interval")
    return features


def check_engine_gate() -> None:
    """`make up` checks the engine and Compose versions the compose file needs before
    it builds anything, and the README and the Docker stack's page state the same."""
    compose = load_yaml(REPO / "docker-compose.yml") or {}
    where = str(STACK_SH.relative_to(REPO))
    script = STACK_SH.read_text(encoding="utf-8")
    gate = {
        name: shell_assignment(script, name)
        for name in ("ENGINE_MIN", "ENGINE_API_MIN", "COMPOSE_MIN")
    }
    for feature in sorted(compose_features(compose)):
        for name, need in zip(gate, FEATURE_NEEDS[feature], strict=True):
            have = gate[name]
            if have is None or version(have) < version(need):
                fail(where, f"{name}={have}: docker-compose.yml uses {feature}, which needs {need}")
    branch = re.search(r"^\s*docker:up\)(.*?);;", script, re.M | re.S)
    body = branch.group(1) if branch else ""
    up = body.find('"${up_args[@]}"')
    if up < 0 or not 0 <= body.find("require_docker_versions") < up:
        fail(where, "docker:up must run require_docker_versions before compose builds anything")
    for doc in VERSIONS_STATED_IN:
        stated = (REPO / doc).read_text(encoding="utf-8")
        for name, product in (("ENGINE_MIN", "Docker Engine"), ("COMPOSE_MIN", "Docker Compose")):
            text = f"{product} {gate[name]}"
            if gate[name] is not None and text not in stated:
                fail(doc, f"does not state the minimum {text!r} that {where} checks")


def check_up_wording() -> None:
    """One `docker compose up` command line: the one `make up` runs."""
    script = STACK_SH.read_text(encoding="utf-8")
    args = re.search(r"^up_args=\(([^)]*)\)", script, re.M)
    if args is None:
        fail(str(STACK_SH.relative_to(REPO)), "no up_args=(...) line")
        return
    command = f"docker compose {args.group(1).strip()}"
    docs = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md"))
    for name in ("docker-compose.yml", "README.md", *docs):
        quoted = re.findall(r"`(docker compose up\b[^`]*)`", (REPO / name).read_text("utf-8"))
        # The same command with replicas (CHAT_REPLICAS=3 make up adds --scale chat=3).
        quoted = [re.sub(r"( --scale \S+=\d+)+$", "", q) for q in quoted]
        if not quoted and name in UP_QUOTED_IN:
            fail(name, f"does not say what `make up` runs (`{command}`)")
        for other in sorted(set(quoted) - {command}):
            fail(name, f"says `{other}`, but `make up` runs `{command}` (stack/stack.sh)")


# Seconds each service takes to exit after SIGTERM; Compose sends SIGKILL after its
# stop_grace_period (default 10 s), and a killed store loses what it had not written.
STOP_SECONDS = {
    "tempo": 30,  # measured (Tempo 3.0.3): it flushes its live store first
    # Not measurable here (no Loki build): its server drains in-flight requests for up to
    # server.graceful_shutdown_timeout, 30 s by default, before the ingester stops.
    "loki": 30,
    "prometheus": 2,  # measured natively, the same v3.16.0: closes its TSDB head and WAL
    "otel-collector": 2,  # measured natively (0.165.1), stores away: retries end at SIGTERM
}
STOP_MARGIN = 1.5  # stop_grace_period >= STOP_MARGIN x the time it takes
COMPOSE_DEFAULT_GRACE = 10.0


def seconds(duration: str) -> float:
    """A Compose duration ("45s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration.strip():
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def check_stop_grace() -> None:
    compose = load_yaml(REPO / "docker-compose.yml") or {}
    services = compose.get("services") or {}
    for name, needed in STOP_SECONDS.items():
        if name not in services:
            fail("docker-compose.yml", f"no service {name} (checks/stack.py STOP_SECONDS)")
            continue
        grace = services[name].get("stop_grace_period")
        try:
            have = COMPOSE_DEFAULT_GRACE if grace is None else seconds(str(grace))
        except ValueError as exc:
            fail("docker-compose.yml", f"{name}: stop_grace_period {exc}")
            continue
        if have < needed * STOP_MARGIN:
            fail(
                "docker-compose.yml",
                f"{name}: stop_grace_period {grace or 'unset (10s)'} is too short: it takes "
                f"about {needed} s to stop; give it at least {needed * STOP_MARGIN:g}s",
            )


# Data source plugins bundled with Grafana 13.2 (no longer core, still in the image).
GRAFANA_BUNDLED_TYPES = {"prometheus", "tempo", "loki"}
# Environment that downloads plugins at start (GF_INSTALL_PLUGINS is the old name).
GRAFANA_PLUGIN_DOWNLOADS = {
    "GF_PLUGINS_PREINSTALL",
    "GF_PLUGINS_PREINSTALL_SYNC",
    "GF_INSTALL_PLUGINS",
}


def check_grafana_service() -> None:
    """Nothing in the compose service or the provisioning needs a plugin download, and
    nothing keeps Grafana from loading its bundled data source plugins."""
    where = "docker-compose.yml: grafana"
    compose = load_yaml(REPO / "docker-compose.yml") or {}
    service = (compose.get("services") or {}).get("grafana")
    if not service:
        fail(where, "no grafana service")
        return
    if service.get("read_only"):
        fail(
            where,
            "read_only: Grafana rewrites its bundled plugins directory, and a failed "
            "rewrite unloads the data source plugins",
        )
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            target = str(volume.get("target", ""))
        else:  # SOURCE:TARGET[:MODE], or a bare TARGET
            target = str(volume).split(":")[1] if ":" in str(volume) else str(volume)
        if target.rstrip("/") in {"/usr/share/grafana", "/usr/share/grafana/data"} or (
            "plugins" in target
        ):
            fail(where, f"volume over {target} hides the plugins bundled with the image")
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    for name in sorted(GRAFANA_PLUGIN_DOWNLOADS & set(environment)):
        fail(where, f"{name}: plugins would be downloaded at start (the data sources are bundled)")
    if str(environment.get("GF_PLUGINS_PREINSTALL_AUTO_UPDATE", "")).lower() != "false":
        fail(
            where,
            'GF_PLUGINS_PREINSTALL_AUTO_UPDATE must be "false": otherwise Grafana '
            "replaces its bundled data source plugins with downloads at every start",
        )
    for source in grafana_datasources():
        if source.get("type") not in GRAFANA_BUNDLED_TYPES:
            fail(
                str(DATASOURCES.relative_to(REPO)),
                f"data source {source.get('uid')}: type {source.get('type')!r} is not one "
                f"that Grafana's image bundles ({', '.join(sorted(GRAFANA_BUNDLED_TYPES))})",
            )


def grafana_datasources() -> list[dict[str, Any]]:
    # `$$` is a literal `$` in provisioning files.
    text = DATASOURCES.read_text(encoding="utf-8").replace("$$", "$")
    return list((yaml.safe_load(text) or {}).get("datasources") or [])


def grafana_logql() -> list[tuple[str, str]]:
    """(where, LogQL) of every Loki query Grafana runs: dashboard panels and variables
    on the Loki data source, and the Tempo data source's trace-to-logs query."""
    queries = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        panels = list(dashboard.get("panels") or [])
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                datasource = target.get("datasource") or panel.get("datasource") or {}
                if datasource.get("type") == "loki" and target.get("expr"):
                    where = f"{path.relative_to(REPO)}: panel {panel.get('title')!r}"
                    queries.append((where, str(target["expr"])))
    for source in grafana_datasources():
        logs = (source.get("jsonData") or {}).get("tracesToLogsV2") or {}
        if logs.get("query"):
            where = f"{DATASOURCES.relative_to(REPO)}: {source.get('uid')} tracesToLogsV2"
            queries.append((where, str(logs["query"])))
    return queries


def grafana_loki_selector_labels() -> set[tuple[str, str]]:
    """(where, label) of every label Grafana selects Loki streams by."""
    used = set()
    matcher = re.compile(r'([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*"')
    for where, expr in grafana_logql():
        selector = re.search(r"\{([^{}]*)\}", expr.replace("${__tags}", ""))
        for label in matcher.findall(selector.group(1) if selector else ""):
            used.add((where, label))
    for source in grafana_datasources():
        logs = (source.get("jsonData") or {}).get("tracesToLogsV2") or {}
        for tag in logs.get("tags") or []:
            where = f"{DATASOURCES.relative_to(REPO)}: {source.get('uid')} tracesToLogsV2 tags"
            used.add((where, str(tag.get("value") or tag.get("key", "")).replace(".", "_")))
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for variable in (dashboard.get("templating") or {}).get("list") or []:
            if (variable.get("datasource") or {}).get("type") == "loki":
                label = (variable.get("query") or {}).get("label")
                if label:
                    used.add((f"{path.relative_to(REPO)}: variable {variable['name']}", label))
    return used


def check_trace_id_filters() -> None:
    """Tempo's search API returns trace ids without their leading zeros, and Grafana
    passes whatever id it has on to Loki; an exact `trace_id="$var"` then misses the
    logs of one trace in sixteen. `=~"0*$var"` matches with and without them."""
    filter_ = re.compile(r'trace_id\s*(=~|!~|!=|=)\s*"([^"]*)"')
    for where, expr in grafana_logql():
        for op, value in filter_.findall(expr):
            if "$" in value and not (op == "=~" and value.startswith("0*$")):
                fail(
                    where,
                    f'trace_id{op}"{value}": a trace id from Tempo\'s search lacks its '
                    f'leading zeros; match it as trace_id=~"0*{value.lstrip("0*")}"',
                )


# Compose service (= registry name) -> its configuration file, and what that file must
# keep: the data Redis durable (append-only file), neither Redis ever evicting (a history
# with an idle TTL, a live rate-limit counter), and both bounded.
REDIS_CONFIGS = {
    "redis": (
        "deploy/redis/redis.conf",
        {"appendonly": {"yes"}, "appendfsync": {"everysec", "always"}},
    ),
    "redis-limits": ("deploy/redis/redis-limits.conf", {}),
}
REDIS_EVERY = {"maxmemory-policy": {"noeviction"}}
# What a command line may add to the shared file: where to listen, where the data is,
# where the users are (a secret of each deployment).
REDIS_PLACE_FLAGS = {"--port", "--bind", "--dir", "--aclfile"}


def check_redis_config() -> None:
    """Each Redis runs its own file in both stacks, adds only its place to it, keeps
    the settings above, and runs unprivileged with a read-only root filesystem."""
    compose = load_yaml(REPO / "docker-compose.yml") or {}
    sys.path.insert(0, str(REPO))
    from stack.redis_servers import redis_command

    for name, (config, required) in REDIS_CONFIGS.items():
        where = f"docker-compose.yml: {name}"
        redis = compose.get("services", {}).get(name)
        if redis is None:
            fail("docker-compose.yml", f"no {name} service (checks/stack.py REDIS_CONFIGS)")
            continue
        command = redis.get("command", [])
        command = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        mounts = {
            str(volume).split(":")[1]: str(volume).split(":")[0]
            for volume in redis.get("volumes", [])
            if str(volume).count(":") >= 1
        }
        secrets = {f"/run/secrets/{secret}" for secret in redis.get("secrets") or []}
        if len(command) < 2 or command[0] != "redis-server":
            fail(where, f"command {command} is not `redis-server <conf> ...`")
        elif mounts.get(command[1]) != f"./{config}":
            fail(where, f"{command[1]} is not ./{config} mounted")
        elif (
            dict(zip(command[2::2], command[3::2], strict=False))
            != {"--aclfile": next(iter(secrets), "")}
            or len(secrets) != 1
        ):
            fail(where, f"command {command}: adds anything but --aclfile <its one secret>")
        if redis.get("read_only") is not True or redis.get("cap_drop") != ["ALL"]:
            fail(where, "needs read_only: true and cap_drop: [ALL], like the other containers")
        if str(redis.get("user", "0")).split(":")[0] in ("0", "root"):
            fail(where, "runs as root: set user (the image's redis user needs no capability)")

        with tempfile.TemporaryDirectory() as data_dir:
            native = redis_command(6380, Path(data_dir), name)
        flags = set(native[2::2])
        if native[:2] != ["redis-server", str(REPO / config)] or not flags <= REDIS_PLACE_FLAGS:
            fail("stack/redis_servers.py", f"{name}: adds more than {REDIS_PLACE_FLAGS}")

        settings: dict[str, str] = {}
        for line in (REPO / config).read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words and not words[0].startswith("#"):
                settings[words[0].lower()] = " ".join(words[1:]).strip('"')
        for setting, allowed in {**required, **REDIS_EVERY}.items():
            if settings.get(setting) not in allowed:
                fail(config, f"{setting} is {settings.get(setting)!r}, not in {sorted(allowed)}")
        if not settings.get("maxmemory"):
            fail(config, "no maxmemory: an unbounded Redis grows until the kernel kills it")


def main() -> int:
    check_pins()
    check_collector_env()
    check_tempo()
    check_loki()
    check_trace_id_filters()
    check_engine_gate()
    check_up_wording()
    check_stop_grace()
    check_grafana_service()
    check_redis_config()
    if problems:
        for problem in problems:
            print(f"FAIL {problem}", file=sys.stderr)
        print(f"check_stack: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        "check_stack: OK (image pins and their sources, Collector environment, Tempo and Loki "
        "configs, engine gate, `up` command line, stop grace periods, Grafana plugins, "
        "trace id filters, one configuration per Redis)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
