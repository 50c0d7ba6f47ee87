#!/usr/bin/env bash
# Build the native tools of the stack into $TOOLS_DIR/bin (default: <repo>/.tools/bin).
#
#   tools/build.sh                 # every tool
#   tools/build.sh otelcol jaeger  # only these
#
# Tools: otelcol prometheus (also promtool) jaeger victoria-logs composecheck kubernetes
# (kube-apiserver, etcd and kubectl, for checks/k8s.py), actionlint and gitleaks (for
# checks/workflows.py and checks/secrets.py); on request only, for GitHub workflows and
# nothing here: trivy (the image scanner of security.yml, a large build), kind and helm
# (the cluster of k8s.yml).
# Every version is pinned in exactly one place: tools/<tool>/go.mod + go.sum (one small
# module per tool, each with a `tool` directive, so the big dependency graphs never meet in
# one MVS), and for the Collector otel-collector/builder-config.yaml, built by the OCB
# pinned in tools/ocb/go.mod.
#
# A tool is rebuilt only when the hash of its inputs (go.mod/go.sum, the builder manifest,
# local component sources, its build recipe below, the Go version) differs from its stamp
# in $TOOLS_DIR/stamps, so a second run is a no-op. Build output goes to $TOOLS_DIR/logs/<tool>.log.
# Builds run one after another with `go build -p 2`: these graphs are large and the
# machines have two cores.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Absolute, since the builds run in other directories.
TOOLS_DIR=$(realpath -m "${TOOLS_DIR:-$REPO/.tools}")
BIN=$TOOLS_DIR/bin
STAMPS=$TOOLS_DIR/stamps
LOGS=$TOOLS_DIR/logs
ALL_TOOLS=(otelcol prometheus jaeger victoria-logs composecheck kubernetes actionlint gitleaks)
# Built only when named.
ON_REQUEST=(trivy kind helm)

# Static binaries (as the upstream releases are); two build jobs; keep any GOFLAGS given.
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-p=2"

die() { echo "tools.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go is not installed (Go >= 1.26 is needed)"
mkdir -p "$BIN" "$STAMPS" "$LOGS"

# inputs_hash TOOL FILE... : one hash over the named files' contents, TOOL's build recipe
# (the build_TOOL function below, and go_build_stamped where it uses it) and the Go
# toolchain.
inputs_hash() {
  local tool=$1 recipe
  shift
  recipe=$(declare -f "build_$tool")
  # A recipe that builds through go_build_stamped: that function is part of it.
  [[ $recipe == *go_build_stamped* ]] && recipe+=$(declare -f go_build_stamped)
  { go env GOVERSION GOOS GOARCH CGO_ENABLED; echo "$recipe"; sha256sum "$@"; } |
    sha256sum | cut -d' ' -f1
}

# tool_inputs TOOL : the files whose change must rebuild TOOL (paths relative to the repo).
tool_inputs() {
  case $1 in
    otelcol)
      echo tools/ocb/go.mod tools/ocb/go.sum otel-collector/builder-config.yaml
      # Local components referenced by the manifest (`path:`), sources only.
      find otel-collector -mindepth 2 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) \
        ! -name '*_test.go' | LC_ALL=C sort ;;
    prometheus) echo tools/prometheus/go.mod tools/prometheus/go.sum ;;
    jaeger) echo tools/jaeger/go.mod tools/jaeger/go.sum ;;
    victoria-logs) echo tools/victorialogs/go.mod tools/victorialogs/go.sum ;;
    composecheck) echo tools/composecheck/go.mod tools/composecheck/go.sum tools/composecheck/main.go ;;
    kubernetes) echo tools/kubernetes/go.mod tools/kubernetes/go.sum ;;
    actionlint) echo tools/actionlint/go.mod tools/actionlint/go.sum ;;
    gitleaks) echo tools/gitleaks/go.mod tools/gitleaks/go.sum ;;
    trivy) echo tools/trivy/go.mod tools/trivy/go.sum ;;
    kind) echo tools/kind/go.mod tools/kind/go.sum ;;
    helm) echo tools/helm/go.mod tools/helm/go.sum ;;
    *) die "unknown tool '$1'" ;;
  esac
}

# tool_binaries TOOL : the binaries TOOL puts in $BIN.
tool_binaries() {
  case $1 in
    prometheus) echo prometheus promtool ;;
    kubernetes) echo kube-apiserver etcd kubectl ;;
    *) echo "$1" ;;
  esac
}

# module_version DIR MODULE : the version of MODULE that the tool module in DIR pins.
module_version() { (cd "$REPO/$1" && go list -m -f '{{.Version}}' "$2"); }

build_otelcol() {
  (cd "$REPO/tools/ocb" && go build -trimpath -o "$BIN/ocb" go.opentelemetry.io/collector/cmd/builder)
  # The manifest's output_path is for running OCB by hand from the repo root; here it is
  # redirected under $TOOLS_DIR by a derived copy (local `path:` entries stay relative
  # to the repo root, where OCB runs).
  local out=$TOOLS_DIR/otelcol-build manifest=$TOOLS_DIR/otelcol.builder-config.yaml
  sed -E "s|^([[:space:]]*output_path:).*|\1 $out|" \
    "$REPO/otel-collector/builder-config.yaml" >"$manifest"
  grep -q "output_path: $out\$" "$manifest" || die "no dist.output_path in builder-config.yaml"
  (cd "$REPO" && "$BIN/ocb" --config="$manifest")
  install -m 0755 "$out/otelcol" "$BIN/otelcol"
}

build_prometheus() {
  # Module v0.3XX.Y is Prometheus v3.XX.Y; stamp it so `prometheus --version` and
  # /api/v1/status/buildinfo tell it. No `builtinassets` tag: the module carries no built
  # web UI (it is made by npm upstream), so the UI answers 500 while the HTTP API works.
  local mv version
  mv=$(module_version tools/prometheus github.com/prometheus/prometheus)
  version=$(echo "$mv" | sed -E 's/^v0\.([0-9]+)([0-9]{2})\.([0-9]+)$/\1.\2.\3/; s/^([0-9]+)\.0([0-9])\./\1.\2./')
  (cd "$REPO/tools/prometheus" && go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version -X github.com/prometheus/common/version.Branch=module-$mv" \
    -o "$BIN/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
}

build_jaeger() {
  # Module v1.76.0 is Jaeger v2.13: `jaeger version` shows the module version.
  local mv
  mv=$(module_version tools/jaeger github.com/jaegertracing/jaeger)
  (cd "$REPO/tools/jaeger" && go build -trimpath \
    -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=module-$mv" \
    -o "$BIN/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
}

build_victoria-logs() {
  local mv
  mv=$(module_version tools/victorialogs github.com/VictoriaMetrics/VictoriaLogs)
  (cd "$REPO/tools/victorialogs" && go build -trimpath \
    -ldflags "-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-$mv" \
    -o "$BIN/victoria-logs" github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs)
}

build_kubernetes() {
  # Stamp the release, as Kubernetes' own build does (hack/lib/version.sh): the API server
  # reports it at /version, and kubectl compares it with its own.
  local k8s etcd minor
  k8s=$(module_version tools/kubernetes k8s.io/kubernetes)
  etcd=$(module_version tools/kubernetes go.etcd.io/etcd/server/v3)
  minor=$(echo "$k8s" | cut -d. -f2)
  local stamp="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1"
  stamp+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  stamp+=" -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1"
  stamp+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$REPO/tools/kubernetes" && go build -trimpath -ldflags "-s -w $stamp" \
    -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
  # etcd's main package is its module's root (go.etcd.io/etcd/server/v3): name the binary.
  (cd "$REPO/tools/kubernetes" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  echo "kubernetes $k8s, etcd $etcd"
}

# go_build_stamped DIR MODULE VARIABLE PACKAGE BINARY: `go build` PACKAGE in tools/DIR into
# $BIN/BINARY, the string VARIABLE (path.name) set to the version of MODULE that tools/DIR
# pins, as the tool's own release build stamps it (built as a dependency of our module,
# the tool would otherwise report this module's "(devel)" or its placeholder).
go_build_stamped() {
  local mv
  mv=$(module_version "tools/$1" "$2")
  (cd "$REPO/tools/$1" && go build -trimpath -ldflags "-s -w -X $3=$mv" -o "$BIN/$5" "$4")
}

build_actionlint() {
  go_build_stamped actionlint github.com/rhysd/actionlint github.com/rhysd/actionlint.version \
    github.com/rhysd/actionlint/cmd/actionlint actionlint
}

build_gitleaks() {
  # The main package is the module's root.
  go_build_stamped gitleaks github.com/zricethezav/gitleaks/v8 \
    github.com/zricethezav/gitleaks/v8/version.Version github.com/zricethezav/gitleaks/v8 gitleaks
}

build_trivy() {
  # As upstream's release build does (goreleaser.yml): encoding/json/v2 is behind
  # GOEXPERIMENT=jsonv2 in Go 1.26.
  GOEXPERIMENT=jsonv2 go_build_stamped trivy github.com/aquasecurity/trivy \
    github.com/aquasecurity/trivy/pkg/version/app.ver github.com/aquasecurity/trivy/cmd/trivy trivy
}

build_kind() {
  # kind's version is in its source; so is the digest of the node image it starts.
  (cd "$REPO/tools/kind" && go build -trimpath -ldflags "-s -w" -o "$BIN/kind" sigs.k8s.io/kind)
}

build_helm() {
  go_build_stamped helm helm.sh/helm/v3 helm.sh/helm/v3/internal/version.version \
    helm.sh/helm/v3/cmd/helm helm
}

build_composecheck() {
  (cd "$REPO/tools/composecheck" && go build -trimpath -o "$BIN/composecheck" .)
}

up_to_date() { # TOOL HASH
  [[ -f $STAMPS/$1 && $(<"$STAMPS/$1") == "$2" ]] || return 1
  local b
  for b in $(tool_binaries "$1"); do [[ -x $BIN/$b ]] || return 1; done
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=("${ALL_TOOLS[@]}")
for tool in "${tools[@]}"; do
  [[ " ${ALL_TOOLS[*]} ${ON_REQUEST[*]} " == *" $tool "* ]] ||
    die "unknown tool '$tool' (known: ${ALL_TOOLS[*]} ${ON_REQUEST[*]})"
done
cd "$REPO"
for tool in "${tools[@]}"; do
  # shellcheck disable=SC2046 # word splitting of the file list is intended
  hash=$(inputs_hash "$tool" $(tool_inputs "$tool"))
  if up_to_date "$tool" "$hash"; then
    echo "$tool: up to date"
    continue
  fi
  start=$SECONDS
  # Not `if ! build_...` nor `build_... || rc=$?`: errexit is off inside a function called
  # as a condition or in a || list, and every failing step of a build must stop it.
  set +e
  (set -e; "build_$tool") >"$LOGS/$tool.log" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    tail -n 30 "$LOGS/$tool.log" >&2
    die "$tool: build failed (full log: $LOGS/$tool.log)"
  fi
  echo "$hash" >"$STAMPS/$tool"
  echo "$tool: built in $((SECONDS - start))s -> $BIN/$(tool_binaries "$tool" | sed "s| |, $BIN/|g")"
done
