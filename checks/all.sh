#!/usr/bin/env bash
# Static checks of everything the stack deploys; no Docker engine needed.
#
#   checks/all.sh            # every check; tools come from .tools/bin (tools/build.sh)
#
# Checks, in order:
#   compose      docker-compose.yml loads as Compose would load it, every image pinned
#                (.tools/bin/composecheck, compose-go)
#   stack        .env pins (each citing its release) vs. the native toolchain, Compose ↔
#                Collector environment, Tempo 3 / Loki 3.7 config lint (Loki's index
#                labels), the Docker Engine/Compose version gate of `make up` (and the
#                versions the docs state), one `up` command line in code and docs, stop
#                grace periods, Grafana's bundled
#                plugins, trace id filters in Loki queries, one configuration per Redis
#                (checks/stack.py)
#   services     docker-compose.yml and the alert rules list the services of
#                services/registry.py, and its networks let each container reach only
#                what it calls (checks/services.py)
#   redis-acl    the demo's Redis ACL files are what deploy/redis/generate_acl.py makes
#   collector    otel-collector/config.yaml validated by the built Collector
#                (checks/collector.sh), then once more with exactly the
#                environment docker-compose.yml gives the otel-collector service
#   prometheus   prometheus.yml with the native targets and with the Docker ones
#                (promtool check config)
#   rules        alert rules parse (promtool check rules) and their unit tests pass
#                (promtool test rules)
#   dashboards   the committed dashboard JSON is what deploy/grafana/generate.py makes
#   web          the chat page's bundle, the Swagger UI files and the docs' Mermaid are
#                what `make web` builds: checksums always, and a rebuild from the npm
#                lock file compared
#                byte for byte where npm is installed (checks/web.py)
#   grafana      data sources, dashboards, and every PromQL expression in them
#                (checks/grafana.py)
#   k8s          every kustomization under deploy/k8s renders, passes the policy (probes,
#                limits, non-root, read-only root, pinned images) and is accepted by a
#                real kube-apiserver (with etcd) started here: server-side dry-run apply,
#                strict field validation, no warnings (checks/k8s.py)
#   k8s-helm     the backends on Kubernetes: deploy/k8s/helm's values files and the Helm
#                commands of docs/run/kubernetes.md agree with .env, the data sources, the
#                Collector's environment, tempo.yaml, loki.yaml, prometheus.yml and
#                compose; the kustomizations generate a ConfigMap per dashboard
#                (checks/k8s_helm.py; `kubectl kustomize` too where kubectl is)
#   docs         the docs site builds with `mkdocs build --strict` (links, anchors, nav,
#                included result files, repository paths named in pages), loads nothing
#                from another host, and README.md's links, paths and `make` targets
#                exist (checks/docs.py)
#   workflows    the GitHub workflows: actionlint (with ShellCheck over their scripts)
#                and zizmor (offline, pedantic) find nothing, every action is pinned by
#                commit with its version beside it, and Renovate's configuration reaches
#                every pin of .env and the Collector's manifest (checks/workflows.py)
#   secrets      gitleaks finds no secret in the working tree (tracked files and new
#                ones not ignored; .gitleaks.toml allows the demo's own credentials)
#                (checks/secrets.py)
#   npm-audit    no advisory for web/package-lock.json (`npm audit`), where npm is
#                installed and the registry answers; skipped, saying why, elsewhere
#                (checks/npm_audit.py)
# (ruff's security rules, S, run in `make lint`; the scanners that need vulnerability
# databases run in .github/workflows/security.yml.)
#
# A check whose tool is missing counts as failed, and says which tool to build. Set
# CHECK_ALLOW_MISSING=1 to report such checks as skipped instead (e.g. before the
# first `make tools`). A check that exits 77 (automake's convention) could not run here
# and has said why: it is reported as skipped. Environment: TOOLS_DIR (default .tools),
# PROMTOOL, PYTHON.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
BIN=${TOOLS_DIR:-$REPO/.tools}/bin
export PROMTOOL=${PROMTOOL:-$BIN/promtool}
COMPOSECHECK=${COMPOSECHECK:-$BIN/composecheck}
# The interpreter for the Python checks (PyYAML needed), e.g. PYTHON="uv run python".
read -ra PY <<<"${PYTHON:-python3}"

passed=() failed=() skipped=()

# check NAME COMMAND... : run one check and record its outcome.
check() {
  local name=$1
  shift
  printf '\n==> %s: %s\n' "$name" "$*"
  local rc=0
  "$@" || rc=$?
  case $rc in
    0) passed+=("$name") ;;
    77) skipped+=("$name") ;;
    *) failed+=("$name") ;;
  esac
}

# missing NAME WHAT HOW : record a check that cannot run.
missing() {
  printf '\n==> %s: MISSING %s (%s)\n' "$1" "$2" "$3"
  if [[ ${CHECK_ALLOW_MISSING:-0} == 1 ]]; then skipped+=("$1"); else failed+=("$1 (missing $2)"); fi
}

have() { [[ -x $1 ]]; }

# otelcol validate with the otel-collector service's environment from docker-compose.yml.
check_collector_compose_env() {
  local otelcol=${OTELCOL:-$BIN/otelcol} pairs
  mapfile -t pairs < <("${PY[@]}" -c '
import sys, yaml
env = yaml.safe_load(open("docker-compose.yml"))["services"]["otel-collector"].get("environment") or {}
items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
for key, value in items:
    print(f"{key}={value}")
') || return 1
  printf '    %s\n' "${pairs[@]}"
  env "${pairs[@]}" "$otelcol" validate --config=otel-collector/config.yaml && echo "ok: otelcol validate (docker-compose environment)"
}

# promtool check config, once per layout of the scrape targets: the native one as
# committed, and the Docker one (targets.docker/ mounted over targets/).
check_prometheus_config() {
  "$PROMTOOL" check config deploy/prometheus/prometheus.yml || return 1
  local tmp rc
  tmp=$(mktemp -d)
  cp deploy/prometheus/prometheus.yml "$tmp/"
  cp -r deploy/prometheus/rules "$tmp/rules"
  cp -r deploy/prometheus/targets.docker "$tmp/targets"
  "$PROMTOOL" check config "$tmp/prometheus.yml"
  rc=$?
  rm -rf "$tmp"
  return $rc
}

if have "$COMPOSECHECK"; then
  check compose "$COMPOSECHECK" docker-compose.yml
else
  missing compose "$COMPOSECHECK" "tools/build.sh composecheck"
fi

check stack "${PY[@]}" -m checks.stack
check services "${PY[@]}" -m checks.services
check redis-acl "${PY[@]}" deploy/redis/generate_acl.py --check

if [[ -x checks/collector.sh ]]; then
  check collector checks/collector.sh
  if have "${OTELCOL:-$BIN/otelcol}"; then
    check collector-compose-env check_collector_compose_env
  fi
else
  missing collector checks/collector.sh "the Collector's own check script"
fi

if have "$PROMTOOL"; then
  check prometheus check_prometheus_config
  check rules "$PROMTOOL" check rules deploy/prometheus/rules/alerts.yml
  check rule-tests "$PROMTOOL" test rules deploy/prometheus/rules/alerts.test.yml
else
  for name in prometheus rules rule-tests; do
    missing "$name" "$PROMTOOL" "tools/build.sh prometheus"
  done
fi

check dashboards "${PY[@]}" deploy/grafana/generate.py --check

if command -v npm >/dev/null; then
  check web "${PY[@]}" -m checks.web --rebuild
else
  echo "(npm not installed: the web check compares checksums only, without a rebuild)"
  check web "${PY[@]}" -m checks.web
fi

if have "$PROMTOOL"; then
  check grafana "${PY[@]}" -m checks.grafana
else
  missing grafana "$PROMTOOL" "tools/build.sh prometheus"
fi

if have "$BIN/kube-apiserver" && have "$BIN/etcd" && have "$BIN/kubectl"; then
  check k8s "${PY[@]}" -m checks.k8s
else
  missing k8s "$BIN/kube-apiserver, etcd, kubectl" "tools/build.sh kubernetes"
fi
check k8s-helm "${PY[@]}" -m checks.k8s_helm
check docs "${PY[@]}" -m checks.docs

if have "$BIN/actionlint"; then
  check workflows "${PY[@]}" -m checks.workflows
else
  missing workflows "$BIN/actionlint" "tools/build.sh actionlint"
fi
if have "$BIN/gitleaks"; then
  check secrets "${PY[@]}" -m checks.secrets
else
  missing secrets "$BIN/gitleaks" "tools/build.sh gitleaks"
fi
check npm-audit "${PY[@]}" -m checks.npm_audit

printf '\n==> summary: %d passed, %d failed, %d skipped\n' "${#passed[@]}" "${#failed[@]}" "${#skipped[@]}"
for name in "${failed[@]}"; do printf '    FAILED  %s\n' "$name"; done
for name in "${skipped[@]}"; do printf '    SKIPPED %s\n' "$name"; done
[[ ${#failed[@]} -eq 0 ]]
