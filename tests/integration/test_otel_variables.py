"""The standard OTEL_* variables, in real service processes.

A cache service (uvicorn, real Redis) exports to test receivers over gRPC and HTTP as
OTEL_EXPORTER_OTLP_PROTOCOL and its per-signal variants say; with OTEL_SDK_DISABLED it
exports nothing and starts no export thread. Each test stops its process before looking:
the shutdown flush delivers everything that was going to be sent, so no test waits on a
timer (tests/services/test_otel_variables.py has the in-process cases).
"""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stack.native import REPO
from stack.processes import free_port
from tests.integration.conftest import service_process
from tests.support.otlp import OtlpReceiver, otlp_grpc_receiver, otlp_receiver

SIGNALS = ("traces", "metrics", "logs")


def _what_arrived(receiver: OtlpReceiver) -> set[str]:
    """The signals that reached ``receiver`` from the cache service."""
    arrived = set()
    if any(span.span.name == "GET /stats" for span in receiver.spans):
        arrived.add("traces")
    if "http.server.request.duration" in receiver.metrics.get("cache", set()):
        arrived.add("metrics")
    if any(log.record.body.string_value == "cache service started" for log in receiver.logs):
        arrived.add("logs")
    return arrived


def _one_request(port: int) -> httpx.Response:
    response = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5)
    assert response.status_code == 200
    return response


@pytest.mark.parametrize(
    ("general", "grpc_signals"),
    [
        ("grpc", {"traces", "logs"}),  # and OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf
        ("http/protobuf", {"traces"}),  # and OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc
    ],
)
def test_each_signal_goes_over_the_protocol_its_variables_choose(
    redis_url: str, log_dir: Path, general: str, grpc_signals: set[str]
) -> None:
    port = free_port()
    with otlp_grpc_receiver() as grpc_receiver, otlp_receiver() as http_receiver:
        endpoints = {"grpc": grpc_receiver.endpoint, "http/protobuf": http_receiver.endpoint}
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": general,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoints[general],
            "CACHE_REDIS_URL": redis_url,
        }
        for signal in SIGNALS:
            protocol = "grpc" if signal in grpc_signals else "http/protobuf"
            if protocol != general:
                env[f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"] = protocol
                # A per-signal HTTP endpoint is the full URL (no /v1/<signal> appended).
                suffix = f"/v1/{signal}" if protocol == "http/protobuf" else ""
                env[f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"] = endpoints[protocol] + suffix
        with service_process("cache", port, log_dir, env):
            _one_request(port)
        assert _what_arrived(grpc_receiver) == grpc_signals
        assert _what_arrived(http_receiver) == set(SIGNALS) - grpc_signals


def test_sdk_disabled_exports_nothing_and_traces_nothing(redis_url: str, log_dir: Path) -> None:
    port = free_port()
    with otlp_receiver() as receiver:
        env = {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "CACHE_REDIS_URL": redis_url,
        }
        with service_process("cache", port, log_dir, env):
            response = _one_request(port)
        assert "traceresponse" not in response.headers  # no server span at all
        assert (receiver.spans, receiver.metrics, receiver.logs) == ([], {}, [])
    # The service's own log lines still go to stdout.
    assert '"message": "cache service started"' in (log_dir / f"cache-{port}.log").read_text()


# Builds the telemetry of a service the way its app factory does, and reports what that
# started: threads, and handlers on the root logger.
PROBE = """
import json, logging, threading
from services.telemetry import configure_telemetry

before = {thread.name for thread in threading.enumerate()}
telemetry = configure_telemetry("cache")
started = sorted(thread.name for thread in threading.enumerate() if thread.name not in before)
handlers = sorted(type(handler).__name__ for handler in logging.getLogger().handlers)
telemetry.shutdown()
print(json.dumps({"threads": started, "handlers": handlers}))
"""


@pytest.mark.parametrize(
    ("disabled", "threads", "handlers"),
    [
        ("true", [], ["_StdoutHandler"]),
        (
            "false",
            [
                "OtelBatchLogRecordProcessor",
                "OtelBatchSpanRecordProcessor",
                "OtelPeriodicExportingMetricReader",
            ],
            ["LoggingHandler", "_StdoutHandler"],
        ),
    ],
)
def test_sdk_disabled_starts_no_export_thread(
    disabled: str, threads: list[str], handlers: list[str]
) -> None:
    env = {
        "OTEL_SDK_DISABLED": disabled,
        # Nobody listens: the shutdown flush of the enabled case fails fast, and quietly.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"threads": threads, "handlers": handlers}
