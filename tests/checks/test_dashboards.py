"""The dashboards' 0-instead-of-No-data fallback can be taken off again, for the e2e test."""

import json

from deploy.grafana.generate import or_zero, without_zero_fallback
from stack.native import REPO

FAILURES = 'sum by (service_name) (rate(m_count{code=~"5.."}[1m]))'
TOTAL = "sum by (service_name) (rate(m_count[1m]))"


def test_only_the_failures_are_left() -> None:
    assert without_zero_fallback(or_zero(FAILURES, TOTAL)) == f"({FAILURES})"
    ratio = f"({or_zero(FAILURES, TOTAL)}) / {TOTAL}"
    assert without_zero_fallback(ratio) == f"(({FAILURES})) / {TOTAL}"


def test_a_query_without_fallback_has_nothing_to_take_off() -> None:
    assert without_zero_fallback(TOTAL) is None


def test_every_fallback_in_the_committed_dashboards_comes_off() -> None:
    exprs = [
        target["expr"]
        for path in sorted((REPO / "deploy/grafana/dashboards").glob("*.json"))
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
        if "* 0" in target.get("expr", "")
    ]
    # 2 error ratios, degraded replies, Redis errors, 6 Collector drop counters
    assert len(exprs) == 10
    for expr in exprs:
        failures_only = without_zero_fallback(expr)
        assert failures_only is not None
        assert " or " not in failures_only and "* 0" not in failures_only
