#!/usr/bin/env bash
# `make up|down|ps|logs`: the Docker compose stack where a Docker engine answers, else
# the same pipeline run natively (python -m devstack, see devstack/native.py).
#
#   scripts/stack.sh up|down|ps|logs
#   STACK=docker|native scripts/stack.sh up    # force a side
#   VOLUMES=1 scripts/stack.sh down            # Docker: also delete the data volumes
#
# down/ps/logs act on the stack that is running: the native one if .run/state.json
# says so, else Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

verb=${1:?usage: stack.sh up|down|ps|logs}
read -ra compose <<<"${COMPOSE:-docker compose}"
read -ra run <<<"${RUN:-uv run --frozen}"

side() {
  if [ -n "${STACK:-}" ]; then
    echo "$STACK"
  elif [ "$verb" != up ] && [ -f .run/state.json ]; then
    echo native
  elif docker info >/dev/null 2>&1; then
    echo docker
  else
    [ "$verb" = up ] && echo "No Docker engine here: starting the same pipeline natively (STACK=docker to insist)." >&2
    echo native
  fi
}

case "$(side):$verb" in
  docker:up)
    "${compose[@]}" up -d --build --wait
    cat <<'URLS'
Stack ready:
  Grafana        http://localhost:3000   (dashboards: otel-chat-demo; anonymous viewer)
  Gateway docs   http://localhost:8000/docs
  Prometheus     http://localhost:9090
Send a request and follow its trace: make trace
URLS
    ;;
  docker:down) "${compose[@]}" down ${VOLUMES:+--volumes} ;;
  docker:ps) "${compose[@]}" ps ;;
  docker:logs) "${compose[@]}" logs -f ${S:-} ;;
  native:up)
    make --no-print-directory install tools redis
    "${run[@]}" python -m devstack up --detach ;;
  native:down|native:ps|native:logs) "${run[@]}" python -m devstack "$verb" ;;
  *) echo "stack.sh: unknown '$(side):$verb' (STACK is docker or native)" >&2; exit 2 ;;
esac
