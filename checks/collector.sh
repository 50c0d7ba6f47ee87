#!/usr/bin/env bash
# Check otel-collector/config.yaml against the native Collector build (tools/build.sh):
#   1. `otelcol validate` passes with every ${env:...} unset (the docker-compose defaults)
#      and with the native values of otel-collector/native.env;
#   2. every component type the config names is one `otelcol components` lists (which
#      lists current type names only, so a deprecated alias such as `otlp` for otlp_grpc
#      or `spanmetrics` fails) and is not itself deprecated;
#   3. every component the build has is used: builder-config.yaml lists exactly the
#      config's components.
#
#   checks/collector.sh [CONFIG]     (default: otel-collector/config.yaml)
# Env: TOOLS_DIR (default <repo>/.tools), OTELCOL (default $TOOLS_DIR/bin/otelcol).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$REPO/.tools}
OTELCOL=${OTELCOL:-$TOOLS_DIR/bin/otelcol}
CONFIG=${1:-$REPO/otel-collector/config.yaml}
NATIVE_ENV=$REPO/otel-collector/native.env

fail() { echo "check_collector: FAIL: $*" >&2; exit 1; }
[[ -x $OTELCOL ]] || fail "no Collector at $OTELCOL (build it: tools/build.sh otelcol)"
[[ -f $CONFIG ]] || fail "no config at $CONFIG"

# The variables the config reads, to unset them for the defaults run.
# shellcheck disable=SC2016 # a literal ${env: is searched for
mapfile -t vars < <(grep -v '^[[:space:]]*#' "$CONFIG" | grep -o '\${env:[A-Za-z_][A-Za-z0-9_]*' |
  cut -d: -f2 | sort -u)
unset_args=()
for v in "${vars[@]}"; do unset_args+=(-u "$v"); done

validate() { # LABEL ENV-ARGS...
  local label=$1 out
  shift
  if ! out=$(env "$@" "$OTELCOL" validate --config="$CONFIG" 2>&1); then
    echo "$out" >&2
    fail "otelcol validate ($label)"
  fi
  echo "ok: otelcol validate ($label)"
}
validate "defaults: ${#vars[@]} env vars unset" "${unset_args[@]}"
mapfile -t native < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$NATIVE_ENV")
validate "native values from otel-collector/native.env" "${unset_args[@]}" "${native[@]}"

# Type names: parse with PyYAML (the project venv's Python if it has it).
py=python3
if [[ -x $REPO/.venv/bin/python ]] && "$REPO/.venv/bin/python" -c 'import yaml' 2>/dev/null; then
  py=$REPO/.venv/bin/python
fi
"$py" -c 'import yaml' 2>/dev/null || fail "PyYAML is needed (pip install pyyaml, or in .venv)"
components=$("$OTELCOL" components 2>/dev/null) || fail "otelcol components"

COMPONENTS=$components "$py" - "$CONFIG" <<'EOF' || exit 1
import os
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
components = yaml.safe_load(os.environ["COMPONENTS"])
problems, used_total = [], 0
for kind in ("receivers", "processors", "exporters", "connectors", "extensions"):
    built = {c["name"]: c for c in components.get(kind) or []}
    used = set()
    for key in config.get(kind) or {}:
        name = key.split("/", 1)[0]
        used.add(name)
        if name not in built:
            problems.append(
                f"{kind}: {key!r}: type {name!r} is not a current type name of this build "
                f"(a deprecated alias, or not in builder-config.yaml); current: {sorted(built)}"
            )
            continue
        stabilities = (built[name].get("stability") or {}).values()
        if any(str(s).lower() == "deprecated" for s in stabilities):
            problems.append(f"{kind}: {key!r}: component {name!r} is deprecated")
    used_total += len(used)
    for name in sorted(set(built) - used):
        problems.append(f"{kind}: {name!r} is built but not used: drop it from builder-config.yaml")
if problems:
    print("check_collector: FAIL: component types:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ok: {used_total} component types used, all current (none deprecated), none built unused")
EOF
