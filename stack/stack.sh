#!/usr/bin/env bash
# `make up|down|ps|logs`: the Docker compose stack where a Docker engine answers, else
# the same pipeline run natively (python -m stack, see stack/native.py).
#
#   stack/stack.sh up|down|ps|logs
#   STACK=docker|native stack/stack.sh up    # force a side
#   CHAT_REPLICAS=3 CACHE_REPLICAS=2 stack/stack.sh up   # several of a service, either side
#   VOLUMES=1 stack/stack.sh down            # Docker: also delete the data volumes
#
# down/ps/logs act on the stack that is running: the native one if .run/state.json
# says so, else Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

verb=${1:?usage: stack.sh up|down|ps|logs}
read -ra compose <<<"${COMPOSE:-docker compose}"
read -ra run <<<"${RUN:-uv run --frozen}"

# `make up` on Docker: this one command line (docker-compose.yml's header and
# docs/run/docker.md quote it; checks/stack.py keeps them equal).
up_args=(up -d --build --wait)

# What docker-compose.yml needs: healthcheck.start_interval is refused by engines older
# than Docker Engine 25 (API 1.44), and Compose passes it on from v2.24.1
# (docker/compose#11360). An older engine fails only after every image is built, so
# check first. checks/stack.py keeps these equal to the compose file's needs and
# to what README.md and docs/run/docker.md state.
ENGINE_MIN=25.0
ENGINE_API_MIN=1.44
COMPOSE_MIN=2.24.1

# version_at_least HAVE NEED: HAVE is a dotted version (suffixes allowed) and >= NEED.
version_at_least() {
  [[ $1 =~ ^[0-9]+(\.[0-9]+)* ]] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

require_docker_versions() {
  local engine api have
  read -r engine api < <(docker version --format '{{.Server.Version}} {{.Server.APIVersion}}' 2>/dev/null) || true
  if [ -z "${api:-}" ]; then
    echo "make up: no Docker engine answers \`docker version\` (not running, or not yours to use?)" >&2
    return 1
  fi
  if ! version_at_least "$api" "$ENGINE_API_MIN"; then
    echo "make up: needs Docker Engine $ENGINE_MIN or newer (API $ENGINE_API_MIN); this one is" \
      "$engine (API $api). Upgrade Docker, or run the stack without it: make up STACK=native" >&2
    return 1
  fi
  have=$("${compose[@]}" version --short 2>/dev/null) || have=none
  if ! version_at_least "${have#v}" "$COMPOSE_MIN"; then
    echo "make up: needs Docker Compose $COMPOSE_MIN or newer; \`${compose[*]} version\` says" \
      "$have. Upgrade it, or run the stack without Docker: make up STACK=native" >&2
    return 1
  fi
}

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

# <SERVICE>_REPLICAS: that many containers of the service (`--scale`); natively, that
# many processes (stack/native.py reads the same variables). Not the entry service (the
# first name the registry lists): it publishes its port, which one container holds.
scale_args() {
  local service count
  for service in $(python3 -m services.registry names | cut -d' ' -f2-); do
    count=${service^^}_REPLICAS
    [ -n "${!count:-}" ] && printf '%s\n' --scale "$service=${!count}"
  done
  return 0
}

case "$(side):$verb" in
  docker:up)
    require_docker_versions || exit 1
    mapfile -t scale < <(scale_args)
    if ! "${compose[@]}" "${up_args[@]}" "${scale[@]}"; then
      cat >&2 <<'FAILED'
make up failed. Whatever it started or created is still there, so that you can see why:
  make ps                   which container is not healthy
  make logs S=<service>     its log
  make down                 then remove the containers and the network
  make down VOLUMES=1       ... and the data volumes too
FAILED
      exit 1
    fi
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
    "${run[@]}" python -m stack up --detach ;;
  native:down|native:ps|native:logs) "${run[@]}" python -m stack "$verb" ;;
  *) echo "stack.sh: unknown '$(side):$verb' (STACK is docker or native)" >&2; exit 2 ;;
esac
