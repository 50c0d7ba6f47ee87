#!/usr/bin/env python3
"""Static checks of the Grafana provisioning and of every PromQL expression in it.

    python3 checks/grafana.py            # PROMTOOL=/path/to/promtool to choose the binary

Checks:
  1. the data source file parses, every data source has a unique uid, and every
     `datasourceUid` it links to (traces → logs/metrics, service map, exemplars,
     derived fields) exists;
  2. every dashboard file is valid JSON with the pinned schemaVersion, a unique uid, and
     refers only to provisioned data sources (panels, targets, variables); and it
     survives a strict decode with grafana-foundation-sdk's models: decoded and encoded
     again it is the same JSON, so it has no key Grafana's schema does not know (the
     decode would drop it) and leaves no schema field to Grafana's defaults (the encode
     would add it);
  3. every PromQL expression parses: the queries of dashboard panels and variables, the
     trace → metrics queries of the Tempo data source, and the alert rules. Grafana's
     variables are replaced by plausible values ($__rate_interval → 1m, $service → x,
     ...), the expressions are written as recording rules to a temporary file, and
     `promtool check rules` parses them, the same parser Prometheus uses.

Exit status 0 when everything passes, 1 when a check fails, 2 when promtool is missing.
Standard library plus PyYAML and grafana-foundation-sdk (dev dependencies).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARDS = GRAFANA / "dashboards"
ALERT_RULES = REPO / "deploy" / "prometheus" / "rules" / "alerts.yml"
SCHEMA_VERSION = 42  # keep in step with deploy/grafana/generate.py

# Grafana's built-in variables, replaced by values of the right kind.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__auto": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
    "__tags": 'service_name="x"',  # Tempo's tracesToMetrics: the span's tags as matchers
}
# Data source "uids" that are Grafana's own, not provisioned.
SPECIAL_UIDS = {"-- Grafana --", "-- Mixed --", "-- Dashboard --", "grafana"}
# `$name`, `${name}`, `${name:format}`, `[[name]]`, `${__span.name}`.
VARIABLE = re.compile(r"\$\{([\w.]+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables by values that keep the PromQL well-formed."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        return variables.get(name, "x")

    return VARIABLE.sub(value, expr)


def as_promql(query: str) -> str:
    """A variable query such as label_values(metric, label) → the PromQL inside it."""
    query = query.strip()
    match = re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", query, flags=re.S)
    if match:
        return match.group(1)
    match = re.fullmatch(r"(?:query_result)\((.*)\)", query, flags=re.S)
    if match:
        return match.group(1)
    return query


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def ds_uid(ref: Any) -> str | None:
    if isinstance(ref, dict):
        return ref.get("uid")
    if isinstance(ref, str):  # legacy: a data source name or uid as a plain string
        return ref
    return None


def schema_differences(board: dict[str, Any]) -> list[str]:
    """What a strict decode with the SDK's models finds: keys the schema does not know
    (the decode drops them) and schema fields the file leaves to Grafana's defaults (the
    encode adds them, with the schema's default value)."""
    register_default_plugins()  # panel options and queries decode to their own models
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    return list(_differences(board, again, ""))


def _differences(original: Any, again: Any, path: str) -> Iterator[str]:
    if isinstance(original, dict) and isinstance(again, dict):
        for key in sorted(original.keys() - again.keys()):
            yield f"{path}.{key}: not in Grafana's schema"
        for key in sorted(again.keys() - original.keys()):
            yield f"{path}.{key}: missing (the schema's default: {json.dumps(again[key])})"
        for key in sorted(original.keys() & again.keys()):
            yield from _differences(original[key], again[key], f"{path}.{key}")
    elif isinstance(original, list) and isinstance(again, list) and len(original) == len(again):
        for i, (item, item_again) in enumerate(zip(original, again, strict=True)):
            yield from _differences(item, item_again, f"{path}[{i}]")
    elif original != again:
        yield f"{path}: {json.dumps(original)} decodes as {json.dumps(again)}"


def check_datasources(problems: Problems) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Return {uid: type} and the PromQL of the trace → metrics links."""
    where = str(DATASOURCES.relative_to(REPO))
    try:
        config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problems.add(where, f"cannot read: {exc}")
        return {}, []
    uids: dict[str, str] = {}
    for ds in config.get("datasources", []):
        uid = ds.get("uid")
        if not uid:
            problems.add(where, f"data source {ds.get('name')!r} has no uid")
            continue
        if uid in uids:
            problems.add(where, f"uid {uid!r} is used twice")
        uids[uid] = ds.get("type", "")

    exprs: list[tuple[str, str]] = []
    for ds in config.get("datasources", []):
        name = ds.get("name")
        data = ds.get("jsonData", {}) or {}
        linked: list[tuple[str, Any]] = []
        for key in (
            "tracesToLogsV2",
            "tracesToLogs",
            "tracesToMetrics",
            "tracesToProfiles",
            "serviceMap",
            "lokiSearch",
        ):
            if isinstance(data.get(key), dict):
                linked.append((key, data[key].get("datasourceUid")))
        for i, dest in enumerate(data.get("exemplarTraceIdDestinations", []) or []):
            linked.append((f"exemplarTraceIdDestinations[{i}]", dest.get("datasourceUid")))
        for i, field in enumerate(data.get("derivedFields", []) or []):
            if field.get("datasourceUid"):
                linked.append((f"derivedFields[{i}]", field["datasourceUid"]))
        for key, uid in linked:
            if uid not in uids:
                problems.add(where, f"{name}.{key} links to unknown data source uid {uid!r}")
        for query in (data.get("tracesToMetrics", {}) or {}).get("queries", []) or []:
            # In provisioning files `$$` is a literal `$`.
            exprs.append(
                (
                    f"{where}: {name} tracesToMetrics {query.get('name')!r}",
                    substitute(query.get("query", "").replace("$$", "$"), {}),
                )
            )
    return uids, exprs


def check_dashboards(uids: dict[str, str], problems: Problems) -> list[tuple[str, str]]:
    """Check every dashboard file; return the PromQL expressions found in them."""
    exprs: list[tuple[str, str]] = []
    seen_uids: dict[str, str] = {}
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        problems.add(str(DASHBOARDS.relative_to(REPO)), "no dashboards found")
    for path in files:
        where = str(path.relative_to(REPO))
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            problems.add(where, f"invalid JSON: {exc}")
            continue
        if board.get("schemaVersion") != SCHEMA_VERSION:
            problems.add(
                where, f"schemaVersion is {board.get('schemaVersion')!r}, expected {SCHEMA_VERSION}"
            )
        for difference in schema_differences(board):
            problems.add(where, f"strict decode: {difference}")
        uid = board.get("uid")
        if not uid:
            problems.add(where, "dashboard has no uid")
        elif uid in seen_uids:
            problems.add(where, f"dashboard uid {uid!r} also used by {seen_uids[uid]}")
        else:
            seen_uids[uid] = where

        # Values for the dashboard's own variables: their current value when it looks
        # like a duration (so `[$window]` stays valid), otherwise a placeholder.
        variables: dict[str, str] = {}
        for var in board.get("templating", {}).get("list", []):
            current = var.get("current", {}).get("value")
            current = current[0] if isinstance(current, list) and current else current
            looks_like_duration = isinstance(current, str) and re.fullmatch(r"\d+[smhdwy]", current)
            variables[var.get("name", "")] = current if looks_like_duration else "x"

        def check_ref(ref: Any, context: str, where: str = where) -> str | None:
            """The type of the referenced data source; records a problem if it is unknown."""
            uid = ds_uid(ref)
            if uid is None or uid in SPECIAL_UIDS or VARIABLE.fullmatch(uid):
                return None
            if uid not in uids:
                problems.add(where, f"{context} uses unknown data source uid {uid!r}")
                return None
            return uids[uid]

        for var in board.get("templating", {}).get("list", []):
            context = f"variable ${var.get('name')}"
            ds_type = check_ref(var.get("datasource"), context)
            if ds_type == "prometheus":
                query = var.get("query")
                query = query.get("query", "") if isinstance(query, dict) else (query or "")
                if query:
                    exprs.append((f"{where}: {context}", substitute(as_promql(query), variables)))

        for panel in walk_panels(board.get("panels", [])):
            context = f"panel {panel.get('title')!r}"
            panel_type = check_ref(panel.get("datasource"), context)
            for target in panel.get("targets", []) or []:
                target_type = check_ref(
                    target.get("datasource"), f"{context} target {target.get('refId')}"
                )
                if (target_type or panel_type) == "prometheus" and target.get("expr"):
                    exprs.append(
                        (
                            f"{where}: {context} target {target.get('refId')}",
                            substitute(target["expr"], variables),
                        )
                    )
    return exprs


def alert_exprs(problems: Problems) -> list[tuple[str, str]]:
    where = str(ALERT_RULES.relative_to(REPO))
    try:
        config = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problems.add(where, f"cannot read: {exc}")
        return []
    return [
        (f"{where}: {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in config.get("groups", [])
        for rule in group.get("rules", [])
        if "expr" in rule
    ]


def find_promtool() -> str | None:
    candidates = [
        os.environ.get("PROMTOOL"),
        str(REPO / ".tools" / "bin" / "promtool"),
        shutil.which("promtool"),
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def check_promql(exprs: list[tuple[str, str]], promtool: str, problems: Problems) -> None:
    """Parse every expression with promtool, one rule group per expression."""
    groups = [
        {"name": f"expr-{i}", "rules": [{"record": f"check_grafana:expr_{i}", "expr": expr}]}
        for i, (_, expr) in enumerate(exprs)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grafana-exprs.rules.yml"
        path.write_text(
            yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000), encoding="utf-8"
        )
        # S603: the command is promtool from .tools/bin or $PROMTOOL, with our own temp file.
        result = subprocess.run(  # noqa: S603
            [promtool, "check", "rules", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode == 0:
        return
    output = result.stdout + result.stderr
    reported = False
    for i, (source, expr) in enumerate(exprs):
        # promtool names the failing group; map it back to where the expression came from.
        for line in output.splitlines():
            if re.search(rf'group "expr-{i}"', line) or re.search(rf"\bexpr_{i}\b", line):
                problems.add(source, f"PromQL does not parse: {line.strip()}\n      expr: {expr}")
                reported = True
                break
    if not reported:
        problems.add("promtool check rules", output.strip() or f"exit status {result.returncode}")


def main() -> int:
    problems = Problems()
    uids, link_exprs = check_datasources(problems)
    dash_exprs = check_dashboards(uids, problems)
    exprs = dash_exprs + link_exprs + alert_exprs(problems)

    promtool = find_promtool()
    if promtool is None:
        for problem in problems.items:
            print(f"FAIL {problem}", file=sys.stderr)
        print(
            "check_grafana: promtool not found (set PROMTOOL, or build it: "
            f"tools/build.sh prometheus); {len(exprs)} PromQL expressions NOT checked",
            file=sys.stderr,
        )
        return 2
    check_promql(exprs, promtool, problems)

    if problems.items:
        for problem in problems.items:
            print(f"FAIL {problem}", file=sys.stderr)
        print(f"check_grafana: {len(problems.items)} problem(s)", file=sys.stderr)
        return 1
    dashboards = len(list(DASHBOARDS.glob("*.json")))
    print(
        f"check_grafana: OK ({len(uids)} data sources, {dashboards} dashboards, "
        f"{len(exprs)} PromQL expressions parsed by {promtool})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
