#!/usr/bin/env python3
"""Consistency checks of the container stack that no upstream tool makes.

    python3 scripts/check_stack.py

1. Pins (.env): every *_IMAGE has an explicit tag other than `latest`; the Prometheus
   image is the release the native toolchain builds (tools/prometheus/go.mod: module
   v0.3XX.Y is Prometheus v3.XX.Y); the Collector image is the release of
   otel-collector/builder-config.yaml.
2. Compose ↔ Collector config: every ${env:VAR} that otel-collector/config.yaml needs
   without a default is set on the otel-collector service, and docker-compose.yml sets
   no variable that the config never reads (a typo would otherwise go unnoticed).
3. Tempo 3 and Loki 3.7 configs (no binaries of theirs are built here): none of the
   blocks Tempo 3 removed and rejects at start (ingester, compactor, ...), receivers
   bound to 0.0.0.0; Loki on TSDB schema v13 with structured metadata (OTLP needs both).

Exit status 0 when all pass, 1 otherwise. Standard library plus PyYAML.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
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


def main() -> int:
    check_pins()
    check_collector_env()
    check_tempo()
    check_loki()
    if problems:
        for problem in problems:
            print(f"FAIL {problem}", file=sys.stderr)
        print(f"check_stack: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_stack: OK (image pins, Collector environment, Tempo and Loki configs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
