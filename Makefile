# otel-chat-demo. `make help` lists the targets; docs/contribute/reference.md explains them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
UV_VERSION := 0.13.9
# uv from PATH, or bootstrapped (pinned) into .tools/uv on first use.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/uv/bin/uv)
RUN := $(UV) run --frozen
TOOLS_DIR ?= $(CURDIR)/.tools
# The services and their ports: services/registry.py is the one list (stdlib only, so
# the system Python reads it before .venv exists).
REGISTRY := $(PYTHON) -m services.registry
SERVICES := $(shell $(REGISTRY) names)
# Go code of this project's own (the other tools/ modules only pin upstream tools).
GO_MODULES := otel-collector/servicegraphconnector tools/composecheck
# make load (Locust). The defaults stay under the gateway's limits: see loadtest/locustfile.py.
USERS ?= 20
SPAWN_RATE ?= 2
RUN_TIME ?= 1m
HOST ?=
API_KEYS ?=
MAX_FAILURE_RATIO ?= 0.01
MAX_P95_MS ?= 1000

##@ The stack (Docker compose; without a Docker engine the same pipeline natively)

.PHONY: up down ps logs restart
up: ## Start the stack and wait until it is usable (STACK=docker|native forces a side)
	@RUN="$(RUN)" scripts/stack.sh up

down: ## Stop the running stack (VOLUMES=1 also deletes Docker's data volumes)
	@RUN="$(RUN)" scripts/stack.sh down

ps: ## List the running stack's containers or processes
	@RUN="$(RUN)" scripts/stack.sh ps

logs: ## Follow the running stack's logs (Docker: S=service to pick one)
	@RUN="$(RUN)" scripts/stack.sh logs

restart: down up ## Stop, then start again

.PHONY: fault fault-clear
fault: install ## Break the running stack on purpose: SCENARIO=slow-redis|chat-errors|cache-down|collector-down (none: list them)
	$(RUN) python -m devstack fault $(SCENARIO)

fault-clear: install ## Undo every fault of `make fault`
	$(RUN) python -m devstack fault --clear

.PHONY: trace load
# $(call given,VAR,ARGS): ARGS when VAR=... is on make's command line (not merely in the
# environment, where names like SESSION are common). Command-line variables reach the
# recipe's environment, so "$$MESSAGE" passes any text through intact.
given = $(if $(filter command line,$(origin $1)),$2)
trace: install ## One request's waterfall and logs (ID=<trace id>, MESSAGE=, SESSION=, JSON=1)
	$(RUN) python -m devstack trace $(call given,ID,--id "$$ID") \
	  $(call given,MESSAGE,--message "$$MESSAGE") $(call given,SESSION,--session "$$SESSION") \
	  $(call given,JSON,--json)

load: install ## Locust against the running stack (USERS SPAWN_RATE RUN_TIME HOST API_KEYS MAX_*)
	LOCUST_USERS=$(USERS) LOCUST_SPAWN_RATE=$(SPAWN_RATE) LOCUST_RUN_TIME=$(RUN_TIME) \
	  LOCUST_MAX_FAILURE_RATIO=$(MAX_FAILURE_RATIO) LOCUST_MAX_P95_MS=$(MAX_P95_MS) \
	  $(if $(HOST),LOCUST_HOST=$(HOST)) $(if $(API_KEYS),LOCUST_API_KEYS=$(API_KEYS)) \
	  $(RUN) python -m devstack load

.PHONY: example
example: install ## The minimal lesson (examples/minimal) on :8090, exporting to localhost:4318
	$(RUN) uvicorn examples.minimal.app:app --port 8090

.PHONY: bench drills
bench: install tools redis wrk ## Telemetry on vs off in one run; writes bench/ (PROFILE=1: py-spy too)
	$(RUN) python -m devstack bench $(if $(PROFILE),--profile)

drills: install tools redis ## Fault drills under traffic: writes drills/ (summary.md, latest.md, latest.json)
	TOOLS_DIR=$(TOOLS_DIR) $(RUN) python -m devstack drills

.PHONY: dev dev-down
dev: install tools redis ## The native stack in the foreground: Ctrl-C stops everything
	$(RUN) python -m devstack up

dev-down: ## Stop a native stack started with `make up` (detached)
	$(RUN) python -m devstack down

##@ Everyday

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-z0-9%-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: install lint check test-go test-python ## Everything CI runs: lint, static checks, all tests

.PHONY: lint
lint: install ## ruff (lint + format), mypy --strict; gofmt and go vet for the Go code
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	@unformatted=$$(gofmt -l $(GO_MODULES)); test -z "$$unformatted" || \
	  { echo "gofmt needed: $$unformatted"; exit 1; }
	for module in $(GO_MODULES); do (cd $$module && go vet ./...); done

##@ Python

.PHONY: install
install: .venv/.synced ## Install the locked Python dependencies into .venv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

.tools/uv/bin/uv:
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

.PHONY: test-python test-unit test-integration test-e2e test-browser test-k8s
test-python: install redis tools chromium openssl ## All pytest suites (unit, integration, browser, e2e)
	$(RUN) pytest

test-unit: install redis ## In-process tests: three apps chained, in-memory exporters
	$(RUN) pytest tests/unit

test-integration: install redis ## Real uvicorn processes, real Redis, a test OTLP receiver
	$(RUN) pytest tests/integration

test-e2e: install redis tools ## The whole native pipeline, one trace id across every signal
	$(RUN) pytest tests/e2e

test-k8s: install tools openssl ## The Kubernetes check's API server refuses what it should (kube-apiserver + etcd)
	$(RUN) pytest tests/k8s

test-browser: install redis tools chromium ## The chat page in headless Chromium, on the native stack
	$(RUN) pytest tests/browser

.PHONY: redis wrk chromium openssl
redis:
	@scripts/require-redis.sh

wrk:
	@scripts/require.sh wrk wrk "install wrk (macOS: brew install wrk)"

chromium:
	@scripts/require.sh chromium chromium "install Chromium"

# The Kubernetes check's API server needs a service-account signing key (scripts/check_k8s.py).
openssl:
	@scripts/require.sh openssl openssl

# A pattern rule, not .PHONY targets: make skips pattern rules for phony targets.
# With the service's uvicorn settings, as every stack runs it (deploy/gateway/uvicorn.env:
# header limits, and no proxy trusted with X-Forwarded-For).
run-%: install ## Run one service in the foreground on its port: run-gateway, run-chat, ...
	$(if $(filter $*,$(SERVICES)),,$(error no service '$*': one of $(SERVICES) (services/registry.py)))
	$(if $(wildcard deploy/$*/uvicorn.env),set -a && . deploy/$*/uvicorn.env && set +a &&) \
	$(RUN) uvicorn services.$*.main:create_app --factory --port $$($(REGISTRY) port $*)

##@ Configs and native tools

.PHONY: tools
tools: ## Build the pinned native tools (Collector, Prometheus, Jaeger, VictoriaLogs, kube-apiserver) once
	TOOLS_DIR=$(TOOLS_DIR) scripts/tools.sh

.PHONY: test-go
test-go: ## Go tests: the native Collector's servicegraph stand-in
	cd otel-collector/servicegraphconnector && go test ./...

.PHONY: check dashboards
check: install tools openssl ## Static checks: compose, Collector config, Prometheus rules, dashboards, Kubernetes manifests (real API server), the docs
	TOOLS_DIR=$(TOOLS_DIR) PYTHON="$(RUN) python" scripts/check.sh

dashboards: install ## Regenerate the Grafana dashboards (JSON) with Grafana's SDK: scripts/gen_dashboards.py
	$(RUN) python scripts/gen_dashboards.py

##@ Documentation

# Where `make docs` serves the site: loopback, on a port the stacks leave free.
DOCS_ADDRESS ?= 127.0.0.1:8008

.PHONY: docs
docs: install ## Build the docs site (mkdocs.yml, docs/), serve it on http://127.0.0.1:8008 (DOCS_ADDRESS), rebuild on edits
	$(RUN) mkdocs serve --dev-addr $(DOCS_ADDRESS)

##@ The chat page (needs Node and npm; the built files are committed)

.PHONY: web screenshot
web: ## Build the chat page's bundle, vendor Swagger UI and the docs' Mermaid from web/package-lock.json
	cd web && npm ci --no-audit --no-fund && npm run build

screenshot: install redis tools chromium ## Retake docs/chat-page.png (the README's picture) in headless Chromium
	SCREENSHOT=$(CURDIR)/docs/chat-page.png $(RUN) pytest tests/browser -k screenshot
