"""The request that carried an API key, a bearer token and a cookie left no trace of them."""

import json

from devstack.processes import wait_until
from tests.e2e.conftest import SECRET_VALUES, Backends, Traffic


def _assert_clean(where: str, dump: str) -> None:
    assert dump, f"nothing read from {where}"
    for secret in SECRET_VALUES:
        assert secret not in dump, f"{where} holds a secret"


def test_no_secret_in_jaeger(backends: Backends, traffic: Traffic) -> None:
    trace = wait_until(
        lambda: backends.trace(traffic.secret_trace_id) or None,
        timeout=60,
        what="the secret request's trace",
    )
    _assert_clean("the trace", json.dumps(trace))


def test_no_secret_in_prometheus(backends: Backends, traffic: Traffic) -> None:
    body = backends.get_json(
        backends.ports.prometheus, "/api/v1/series", **{"match[]": '{__name__=~".+"}'}
    )
    _assert_clean("Prometheus series", json.dumps(body["data"]))


def test_no_secret_in_the_log_store(backends: Backends, traffic: Traffic) -> None:
    wait_until(
        lambda: backends.logs(f'trace_id:"{traffic.secret_trace_id}"') or None,
        timeout=60,
        what="the secret request's logs",
    )
    _assert_clean("VictoriaLogs", json.dumps(backends.logs("*")))
