# otel-chat-demo. `make help` lists the targets; the README explains them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
UV_VERSION := 0.13.9
# uv from PATH, or bootstrapped (pinned) into .tools/uv on first use.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/uv/bin/uv)
RUN := $(UV) run --frozen
TOOLS_DIR ?= .tools
SERVICES := gateway chat cache
PORT_gateway := 8000
PORT_chat := 8001
PORT_cache := 8002

##@ Everyday

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-z%-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: install lint check test-python ## Everything CI runs: lint, static config checks, all tests

.PHONY: lint
lint: install ## ruff (lint + format) and mypy --strict
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

##@ Python

.PHONY: install
install: .venv/.synced ## Install the locked Python dependencies into .venv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

.tools/uv/bin/uv:
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

.PHONY: test-python test-unit test-integration
test-python: install redis ## All pytest suites (unit, integration, e2e)
	$(RUN) pytest

test-unit: install redis ## In-process tests: three apps chained, in-memory exporters
	$(RUN) pytest tests/unit

test-integration: install redis ## Real uvicorn processes, real Redis, a test OTLP receiver
	$(RUN) pytest tests/integration

.PHONY: redis
redis:
	@scripts/require-redis.sh

.PHONY: $(addprefix run-,$(SERVICES))
run-%: install ## Run one service in the foreground: run-gateway, run-chat, run-cache
	$(RUN) uvicorn services.$*.main:create_app --factory --port $(PORT_$*)

##@ Configs and native tools

.PHONY: tools
tools: ## Build the pinned native tools (Collector, Prometheus, Jaeger, VictoriaLogs) once
	TOOLS_DIR=$(TOOLS_DIR) scripts/tools.sh

.PHONY: check
check: install tools ## Static checks: compose file, Collector config, Prometheus rules, dashboards
	TOOLS_DIR=$(TOOLS_DIR) PYTHON="$(RUN) python" scripts/check.sh
