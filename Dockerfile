# syntax=docker/dockerfile:1
#
# One image recipe for the three Python services (gateway, chat, cache).
# They share one package (`services/`) and one lock file, so they share this file too;
# the service is chosen with a build argument:
#
#   docker build --build-arg PYTHON_IMAGE=python:3.13.16-slim-trixie \
#                --build-arg UV_VERSION=0.13.9 --build-arg SERVICE=chat --build-arg PORT=8001 .
#
# docker-compose.yml passes all four (the versions come from .env, their only pin).
#
# Stages:
#   build    installs the locked dependencies into /app/.venv with uv, dependencies
#            first (cached until uv.lock changes), then the project itself.
#   runtime  the same slim base plus that virtualenv; no uv, no compiler, no sources
#            outside the venv, running as an unprivileged user.

# Base image, deliberately without a default: .env is the one place it is pinned.
ARG PYTHON_IMAGE

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION
# Dependency groups on top of the runtime ones: the load generator's image
# (compose service loadgen) is built with "--group load"; the services take none.
ARG UV_GROUPS=""
RUN test -n "${UV_VERSION}" || { echo "build argument UV_VERSION is required" >&2; exit 1; } \
 && pip install --no-cache-dir --root-user-action=ignore "uv==${UV_VERSION}"

# Byte-compile at build time (faster start, read-only friendly); copy rather than
# hard-link out of the cache mount; never download an interpreter: use the image's.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# 1. Dependencies only: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups ${UV_GROUPS} --no-install-project

# 2. The project, installed as a regular (non-editable) package into the same venv,
#    so the runtime stage needs nothing from /src.
COPY README.md ./
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups ${UV_GROUPS} --no-editable


FROM ${PYTHON_IMAGE} AS runtime
# Which service this image runs, and on which port (gateway 8000, chat 8001, cache 8002).
ARG SERVICE
ARG PORT
RUN test -n "${SERVICE}" -a -n "${PORT}" \
      || { echo "build arguments SERVICE and PORT are required" >&2; exit 1; } \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=build /app/.venv /app/.venv
# The Locust users (a few kB), for the loadgen service; the services never import them.
COPY experiments/__init__.py /app/experiments/__init__.py
COPY experiments/loadtest /app/experiments/loadtest
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE=${SERVICE} \
    PORT=${PORT}
LABEL org.opencontainers.image.title="otel-chat-demo-${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
USER 10001:10001
EXPOSE ${PORT}

# One process per container: scale with more containers. (`--workers N` works too:
# create_app builds telemetry providers in each worker, and service.instance.id tells
# the workers apart.)
# The slim image has no curl: probe with the interpreter that is already there.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=2)"]
CMD ["sh", "-c", "exec uvicorn \"services.${SERVICE}.main:create_app\" --factory --host 0.0.0.0 --port \"${PORT}\""]
