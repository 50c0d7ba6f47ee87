"""The log store holds each request's log records, under the request's trace id."""

from stack.backends import Backends
from stack.processes import wait_until
from tests.e2e.conftest import Traffic


def test_log_records_carry_trace_ids_and_service_names(
    backends: Backends, traffic: Traffic
) -> None:
    for trace_id in traffic.trace_ids:

        def both_services(t: str = trace_id) -> set[str] | None:
            records = backends.trace_logs(t)
            services = {str(record.get("service.name")) for record in records}
            return services if services >= {"gateway", "chat"} else None

        wait_until(both_services, timeout=60, what=f"gateway and chat logs of {trace_id}")


def test_log_records_carry_the_resource(backends: Backends, traffic: Traffic) -> None:
    records = wait_until(
        lambda: backends.trace_logs(traffic.trace_ids[0]) or None,
        timeout=60,
        what="logs of the first request",
    )
    for record in records:
        assert record["service.namespace"] == "otel-chat-demo"
        assert record["deployment.environment.name"] == "native"
        assert record["span_id"]
