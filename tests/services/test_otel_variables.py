"""The standard OTEL_* variables decide, as the OpenTelemetry specification documents them.

Exporter protocols, samplers and the resource are worked out here, in process; that
the chosen exporters really speak gRPC or HTTP, and that OTEL_SDK_DISABLED starts no
thread, is tested with real processes in tests/integration/test_otel_variables.py.
"""

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version

import pytest

from services.telemetry import Telemetry, configure_telemetry
from services.telemetry._otlp import Signal, otlp_protocol
from tests.services.conftest import SERVICES, Chain, InMemoryTelemetry

# Every variable these tests set: cleared first, so the shell running pytest cannot decide.
VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@contextmanager
def configured(
    monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str], service: str = "chat"
) -> Iterator[Telemetry]:
    """``configure_telemetry(service)`` under ``env``, with in-memory exporters."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    telemetry = configure_telemetry(service, exporters=InMemoryTelemetry().exporters())
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


# --- OTEL_EXPORTER_OTLP_PROTOCOL and the per-signal variants --------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"traces": "http/protobuf", "metrics": "http/protobuf", "logs": "http/protobuf"}),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            {"traces": "grpc", "metrics": "grpc", "logs": "grpc"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": ""},
            {"traces": "grpc", "metrics": "grpc", "logs": "grpc"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            {"traces": "grpc", "metrics": "http/protobuf", "logs": "http/protobuf"},
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
            },
            {"traces": "grpc", "metrics": "grpc", "logs": "http/protobuf"},
        ),
    ],
)
def test_the_signal_variable_wins_over_the_general_one(
    env: dict[str, str], expected: dict[str, str]
) -> None:
    signals: tuple[Signal, ...] = ("traces", "metrics", "logs")
    assert {signal: otlp_protocol(signal, env) for signal in signals} == expected


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},  # in the spec, but no Python exporter
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grcp"},
    ],
)
def test_an_unsupported_protocol_stops_the_service(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="grpc or http/protobuf"):
        otlp_protocol("traces", env)


# --- OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG ----------------------------------


@pytest.mark.parametrize(
    ("env", "root_sampler"),
    [
        ({}, "ParentBased{root:AlwaysOnSampler,"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            "ParentBased{root:TraceIdRatioBased{0.25},",
        ),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, "AlwaysOffSampler"),
    ],
)
def test_the_sampler_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], root_sampler: str
) -> None:
    with configured(monkeypatch, env) as telemetry:
        assert telemetry.tracer_provider.sampler.get_description().startswith(root_sampler)


RATIO = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}


def _sampled_flag(traceresponse: str) -> bool:
    """The "sampled" bit of a W3C ``traceresponse`` header's flags (bit 1 says "random")."""
    return bool(int(traceresponse.rsplit("-", 1)[1], 16) & 0x01)


@pytest.mark.parametrize("otel_env", [{**RATIO, "OTEL_TRACES_SAMPLER_ARG": "0"}])
async def test_a_request_sampled_out_has_no_spans_but_is_counted_in_http_metrics(
    chain: Chain,
) -> None:
    """Head sampling drops the spans of the whole chain (chat and cache follow the
    gateway's decision), while the HTTP metrics still count every request: the
    reason the dashboards' request rates come from them, not from span metrics."""
    response = await chain.chat("hello, sampled out")
    assert response.status_code == 200
    # The trace id is still returned, with the "sampled" flag off.
    assert not _sampled_flag(response.headers["traceresponse"])
    assert chain.all_spans() == []
    for service in SERVICES:
        assert chain.metric_points(service)["http.server.request.duration"]


@pytest.mark.parametrize("otel_env", [{**RATIO, "OTEL_TRACES_SAMPLER_ARG": "1"}])
async def test_a_request_sampled_in_is_traced_in_every_service(chain: Chain) -> None:
    response = await chain.chat("hello, sampled in")
    assert _sampled_flag(response.headers["traceresponse"])
    assert {service for service, _ in chain.all_spans()} == set(SERVICES)


# --- OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES -----------------------------------


@pytest.mark.parametrize(
    ("env", "service_name"),
    [
        ({}, "chat"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes"),
        ({"OTEL_SERVICE_NAME": "from-service-name"}, "from-service-name"),
        (
            {
                "OTEL_SERVICE_NAME": "from-service-name",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
            },
            "from-service-name",
        ),
    ],
)
def test_service_name_precedence(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    service_name: str,
) -> None:
    """OTEL_SERVICE_NAME, then service.name in OTEL_RESOURCE_ATTRIBUTES, then the code's."""
    with configured(monkeypatch, env) as telemetry:
        with telemetry.tracer.start_as_current_span("work"):
            pass
        assert telemetry.tracer_provider.resource.attributes["service.name"] == service_name
        # The JSON lines on stdout name the same service.
        logging.getLogger("test").warning("which service?")
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["service.name"] == service_name


def test_defaults_the_code_owns_until_a_variable_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with configured(monkeypatch, {}) as telemetry:
        resource = dict(telemetry.tracer_provider.resource.attributes)
    assert resource["service.version"] == version("otel-chat-demo")
    assert resource["service.namespace"] == "otel-chat-demo"
    assert resource["deployment.environment.name"] == "local"
    assert resource["telemetry.sdk.name"] == "opentelemetry"
    uuid.UUID(str(resource["service.instance.id"]))

    attributes = (
        "service.version=9.9.9,service.namespace=elsewhere,deployment.environment.name=staging"
    )
    with configured(monkeypatch, {"OTEL_RESOURCE_ATTRIBUTES": attributes}) as telemetry:
        resource = dict(telemetry.tracer_provider.resource.attributes)
    assert resource["service.version"] == "9.9.9"
    assert resource["service.namespace"] == "elsewhere"
    assert resource["deployment.environment.name"] == "staging"


def test_instance_id_is_per_process_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = set()
    for _ in range(2):
        with configured(monkeypatch, {}) as telemetry:
            ids.add(telemetry.tracer_provider.resource.attributes["service.instance.id"])
    assert len(ids) == 2  # each configure_telemetry (each worker process) has its own

    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=cache-0"}
    with configured(monkeypatch, env) as telemetry:
        assert telemetry.tracer_provider.resource.attributes["service.instance.id"] == "cache-0"
