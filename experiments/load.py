"""``make load``: Locust (``experiments/loadtest/locustfile.py``) against the running stack.

Headless: live progress every few seconds, then a per-endpoint table and the
SLO check; CSV and HTML reports land in the git-ignored ``.load-reports/``.
Locust reads its settings from ``LOCUST_*`` variables, which the Makefile sets
from its own (``USERS``, ``SPAWN_RATE``, ``RUN_TIME``, ``HOST``, ``API_KEYS``,
``MAX_FAILURE_RATIO``, ``MAX_P95_MS``).

- Native stack (``make dev``): Locust runs from ``.venv`` against the gateway's
  port and exports its telemetry to the native Collector.
- Docker stack (``make up``): the compose service ``loadgen`` (profile ``load``)
  runs it headless inside the compose network, where the Collector is.
"""

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from stack.native import LOOPBACK, REPO, Ports

LOCUSTFILE = "experiments/loadtest/locustfile.py"
REPORTS = REPO / ".load-reports"
# The load generator's telemetry identity; the Collector's service graph draws
# the edge loadgen -> gateway from its client spans.
SERVICE_NAME = "loadgen"


def locust_options(reports: str) -> list[str]:
    """What every ``make load`` run passes: the locustfile, telemetry, headless, reports."""
    return [
        "-f",
        LOCUSTFILE,
        "--otel",
        "--headless",
        "--csv",
        f"{reports}/load",
        "--html",
        f"{reports}/load.html",
    ]


def telemetry_env(otlp_endpoint: str, environment: str) -> dict[str, str]:
    """Standard OTEL_* variables for Locust's OpenTelemetry setup (``--otel``)."""
    return {
        "OTEL_SERVICE_NAME": SERVICE_NAME,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        # Locust's default is gRPC; the project's SDKs and exporters speak OTLP/HTTP.
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name={environment}",
    }


def native_command(
    ports: Ports, environ: Mapping[str, str], reports: Path = REPORTS
) -> tuple[list[str], dict[str, str]]:
    """Locust from this virtualenv against a native stack on ``ports``: argv, and
    the variables to add to the environment."""
    env = telemetry_env(f"{LOOPBACK}:{ports.otlp_http}", "native")
    env["LOCUST_HOST"] = environ.get("LOCUST_HOST") or f"{LOOPBACK}:{ports.entry}"
    return [sys.executable, "-m", "locust", *locust_options(str(reports))], env


def docker_command(environ: Mapping[str, str], uid: int, gid: int) -> list[str]:
    """The compose service ``loadgen``, headless, reports written as this user."""
    passed = sorted(name for name in environ if name.startswith("LOCUST_"))
    return [
        "docker",
        "compose",
        "--profile",
        "load",
        "run",
        "--rm",
        "--no-deps",
        "--user",
        f"{uid}:{gid}",
        "--volume",
        f"{REPORTS}:/reports",
        *(arg for name in passed for arg in ("--env", name)),
        "loadgen",
        # `-m`: the working directory (/app, where experiments/ is) goes on sys.path.
        "python",
        "-m",
        "locust",
        *locust_options("/reports"),
    ]


def run_load(ports: Ports | None) -> NoReturn:
    """Run Locust against the native stack on ``ports``, or the Docker stack (None)."""
    REPORTS.mkdir(exist_ok=True)
    if ports is not None:
        command, env = native_command(ports, os.environ)
        print(f"load-testing the native stack at {env['LOCUST_HOST']}")
    else:
        command, env = docker_command(os.environ, os.getuid(), os.getgid()), {}
        print("load-testing the Docker stack (compose service loadgen)")
    os.chdir(REPO)
    os.execvpe(command[0], command, {**os.environ, **env})  # noqa: S606 (argv, no shell)
