"""``make bench``'s arithmetic and outputs (no processes: the run itself is `make bench`)."""

import json

from experiments.bench import (
    RESULTS,
    VARIANTS,
    Round,
    markdown,
    profile_summary,
    summarise,
)
from stack.native import REPO

BENCHMARK_PAGE = REPO / "docs/operate/benchmark.md"


def _round(requests: int, p95: float, cpu: dict[str, float]) -> Round:
    return Round(
        requests=requests,
        seconds=10.0,
        errors=0,
        p50_ms=p95 / 2,
        p95_ms=p95,
        p99_ms=p95 * 2,
        cpu_seconds=cpu,
    )


def test_a_variant_is_its_medians_and_its_cpu_per_request() -> None:
    rounds = [
        _round(1000, 50, {"gateway": 2.0, "chat": 1.0}),
        _round(3000, 70, {"gateway": 4.0, "chat": 3.0}),
        _round(2000, 60, {"gateway": 3.0, "chat": 2.0}),
    ]
    summary = summarise(rounds)
    assert summary["throughput_rps"] == 200.0  # the median round: 2000 in 10 s
    assert summary["p95_ms"] == 60
    assert summary["requests"] == 6000
    # CPU over all rounds, per request: 9 s / 6000 and 6 s / 6000.
    assert summary["cpu_ms_per_request"] == {"gateway": 1.5, "chat": 1.0}
    assert summary["cpu_ms_per_request_total"] == 2.5


def _report() -> dict[str, object]:
    variant = summarise([_round(2000, 60, {"gateway": 3.0})])
    return {
        "throughput_ratio": 0.5,
        "p95_ratio": 2.0,
        "spans_lost": 0,
        "off": variant,
        "on": variant,
        "variants": {v.name: {"about": v.about, **variant} for v in VARIANTS},
        "spans": {"ended": {"on": 10, "on_contrib": 5}, "stored": 15},
        "settings": {"rounds": 3, "seconds_per_round": 15.0, "connections": 32},
        "machine": {
            "cores": 2,
            "cpu_model": "AMD EPYC",
            "python": "3.11.7",
            "load_average_before": [0.1, 0.2, 0.3],
        },
        "date": "2026-11-28T17:00:00+00:00",
        "commit": "abc1234",
    }


def test_the_table_has_a_line_per_variant_and_the_machine() -> None:
    table = markdown(_report())
    for variant in VARIANTS:
        assert f"| `{variant.name}`: {variant.about} | 200 |" in table
    assert "throughput **0.50x**" in table and "lost: **0**" in table
    assert "2 cores (AMD EPYC)" in table and "load average 0.1" in table


def test_the_benchmark_page_includes_the_committed_results() -> None:
    """The docs show experiments/results/bench.md itself (pymdownx.snippets), not a copy of it."""
    lines = BENCHMARK_PAGE.read_text().splitlines()
    assert '--8<-- "experiments/results/bench.md"' in lines
    assert "| variant | req/s |" not in BENCHMARK_PAGE.read_text()  # no table of its own


def test_the_committed_results_have_the_fields_readers_use() -> None:
    report = json.loads((RESULTS / "bench.json").read_text())
    assert {"throughput_ratio", "p95_ratio", "spans_lost", "off", "on"} <= report.keys()
    for side in ("off", "on"):
        for field in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms"):
            assert isinstance(report[side][field], int | float), (side, field)
    assert report["machine"]["cores"] and report["machine"]["cpu_model"]
    assert markdown(report) == (RESULTS / "bench.md").read_text()


def test_a_profile_summary_ranks_libraries_functions_and_calls() -> None:
    site = "/venv/lib/python3.11/site-packages"
    collapsed = "\n".join(
        [
            f"run (uvicorn/main.py:1);handle ({REPO}/services/chat/routes.py:9);"
            f"encode ({site}/opentelemetry/exporter/otlp/x.py:3) 30",
            f"run (uvicorn/main.py:1);handle ({REPO}/services/chat/routes.py:9) 10",
            "run (uvicorn/main.py:1);select (/usr/lib/python3.11/selectors.py:5) 60",
        ]
    )
    summary = profile_summary("chat, variant on", collapsed)
    assert "100 samples" in summary
    assert "| 60.0% | selectors |" in summary
    assert "| 30.0% | opentelemetry.exporter.otlp |" in summary
    assert "| 10.0% | services.chat |" in summary
    # Totals leave out the spine every sample runs under.
    calls = summary.split("## Calls", 1)[1]
    assert "run (" not in calls and "| 40.0% | `handle (services/chat/routes.py)` |" in calls
