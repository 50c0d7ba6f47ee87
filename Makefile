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
# make load (Locust). The defaults stay under the gateway's limits: see experiments/loadtest/locustfile.py.
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
	@RUN="$(RUN)" stack/stack.sh up

down: ## Stop the running stack (VOLUMES=1 also deletes Docker's data volumes)
	@RUN="$(RUN)" stack/stack.sh down

ps: ## List the running stack's containers or processes
	@RUN="$(RUN)" stack/stack.sh ps

logs: ## Follow the running stack's logs (Docker: S=service to pick one)
	@RUN="$(RUN)" stack/stack.sh logs

restart: down up ## Stop, then start again

.PHONY: verify-stack
verify-stack: install ## What a user checks after `make up`, as one script (STACK=, SCENARIO= after make fault, AFTER_DOWN=1)
	$(RUN) python -m stack.verify $(if $(STACK),--stack $(STACK)) \
	  $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(AFTER_DOWN),--after-down)

.PHONY: fault fault-clear
fault: install ## Break the running stack on purpose: SCENARIO=slow-redis|chat-errors|cache-down|collector-down (none: list them)
	$(RUN) python -m stack fault $(SCENARIO)

fault-clear: install ## Undo every fault of `make fault`
	$(RUN) python -m stack fault --clear

.PHONY: trace load
# $(call given,VAR,ARGS): ARGS when VAR=... is on make's command line (not merely in the
# environment, where names like SESSION are common). Command-line variables reach the
# recipe's environment, so "$$MESSAGE" passes any text through intact.
given = $(if $(filter command line,$(origin $1)),$2)
trace: install ## One request's waterfall and logs (ID=<trace id>, MESSAGE=, SESSION=, JSON=1)
	$(RUN) python -m traces $(call given,ID,--id "$$ID") \
	  $(call given,MESSAGE,--message "$$MESSAGE") $(call given,SESSION,--session "$$SESSION") \
	  $(call given,JSON,--json)

load: install ## Locust against the running stack (USERS SPAWN_RATE RUN_TIME HOST API_KEYS MAX_*)
	LOCUST_USERS=$(USERS) LOCUST_SPAWN_RATE=$(SPAWN_RATE) LOCUST_RUN_TIME=$(RUN_TIME) \
	  LOCUST_MAX_FAILURE_RATIO=$(MAX_FAILURE_RATIO) LOCUST_MAX_P95_MS=$(MAX_P95_MS) \
	  $(if $(HOST),LOCUST_HOST=$(HOST)) $(if $(API_KEYS),LOCUST_API_KEYS=$(API_KEYS)) \
	  $(RUN) python -m experiments load

.PHONY: example
example: install ## The minimal lesson (examples/minimal) on :8090, exporting to localhost:4318
	$(RUN) uvicorn examples.minimal.app:app --port 8090

.PHONY: bench drills
bench: install tools redis wrk ## Telemetry on vs off in one run; writes experiments/results/ (PROFILE=1: py-spy too)
	$(RUN) python -m experiments bench $(if $(PROFILE),--profile)

drills: install tools redis ## Fault drills under traffic: writes experiments/results/drills*.{md,json}
	TOOLS_DIR=$(TOOLS_DIR) $(RUN) python -m experiments drills

.PHONY: dev dev-down
dev: install tools redis ## The native stack in the foreground: Ctrl-C stops everything
	$(RUN) python -m stack up

dev-down: ## Stop a native stack started with `make up` (detached)
	$(RUN) python -m stack down

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

# The suites mirror what they test (tests/<folder>); test-python runs them all.
.PHONY: test-python test-services test-integration test-e2e test-browser
.PHONY: test-stack test-traces test-experiments test-checks test-examples
test-python: install redis tools chromium openssl ## All pytest suites
	$(RUN) pytest

test-services: install redis ## The services in one process: three apps chained, in-memory exporters
	$(RUN) pytest tests/services

test-integration: install redis ## The services as real uvicorn processes, real Redis, a test OTLP receiver
	$(RUN) pytest tests/integration

test-e2e: install redis tools ## The whole native pipeline, one trace id across every signal
	$(RUN) pytest tests/e2e

test-browser: install redis tools chromium ## The chat page in headless Chromium, on the native stack
	$(RUN) pytest tests/browser

test-stack: install ## The native stack's and make up's wiring (no processes)
	$(RUN) pytest tests/stack

test-traces: install ## make trace, from recorded store answers
	$(RUN) pytest tests/traces

test-experiments: install redis tools ## The benchmark's and drills' arithmetic, and the drills on a stack
	$(RUN) pytest tests/experiments

test-checks: install tools openssl ## The checks behind make check (the Kubernetes API server's too)
	$(RUN) pytest tests/checks

test-examples: install ## The minimal lesson (examples/minimal) as a real process
	$(RUN) pytest tests/examples

.PHONY: redis wrk chromium openssl
redis:
	@tools/require-redis.sh

wrk:
	@tools/require.sh wrk wrk "install wrk (macOS: brew install wrk)"

chromium:
	@tools/require.sh chromium chromium "install Chromium"

# The Kubernetes check's API server needs a service-account signing key (checks/k8s.py).
openssl:
	@tools/require.sh openssl openssl

# A pattern rule, not .PHONY targets: make skips pattern rules for phony targets.
# With the service's uvicorn settings, as every stack runs it (deploy/gateway/uvicorn.env:
# header limits, and no proxy trusted with X-Forwarded-For).
run-%: install ## Run one service in the foreground on its port: run-gateway, run-chat, ...
	$(if $(filter $*,$(SERVICES)),,$(error no service '$*': one of $(SERVICES) (services/registry.py)))
	$(if $(wildcard deploy/$*/uvicorn.env),set -a && . deploy/$*/uvicorn.env && set +a &&) \
	$(RUN) uvicorn services.$*.main:create_app --factory --port $$($(REGISTRY) port $*)

##@ Configs and native tools

.PHONY: tools
tools: ## Build the pinned native tools (Collector, Prometheus, Jaeger, VictoriaLogs, kube-apiserver, actionlint, gitleaks) once
	TOOLS_DIR=$(TOOLS_DIR) tools/build.sh

.PHONY: test-go
test-go: ## Go tests: the native Collector's servicegraph stand-in
	cd otel-collector/servicegraphconnector && go test ./...

.PHONY: check dashboards
check: install tools openssl ## Static checks: compose, Collector config, Prometheus rules, dashboards, Kubernetes manifests (real API server), the docs, the workflows, secrets
	TOOLS_DIR=$(TOOLS_DIR) PYTHON="$(RUN) python" checks/all.sh

dashboards: install ## Regenerate the Grafana dashboards (JSON) with Grafana's SDK: deploy/grafana/generate.py
	$(RUN) python deploy/grafana/generate.py

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
