"""The fault drills' bookkeeping (experiments.drills, experiments.traffic), and the
committed report against the docs: pure checks, no processes."""

import copy
import json
from typing import Any

import pytest

from experiments.drills import (
    _good_since,
    drill_violations,
    limits_held,
    markdown,
    summary_tables,
    violations,
)
from experiments.traffic import Answer, count_lost_turns
from stack.native import REPO

COMMITTED = REPO / "experiments/results/drills.json"
DRILLS_PAGE = REPO / "docs/operate/drills.md"


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(COMMITTED.read_text())
    return report


@pytest.mark.parametrize(
    ("acknowledged", "stored", "lost"),
    [
        ([], [], 0),
        ([("a", "1"), ("b", "2")], [("a", "1"), ("x", "9"), ("b", "2")], 0),  # extra: fine
        ([("a", "1"), ("b", "2")], [("b", "2"), ("a", "1")], 1),  # out of order
        ([("a", "1"), ("a", "1")], [("a", "1")], 1),  # the same message twice, kept once
        ([("a", "1"), ("b", "2")], [], 2),
    ],
)
def test_lost_turns_are_acknowledged_turns_missing_in_order(
    acknowledged: list[tuple[str, str]], stored: list[tuple[str, str]], lost: int
) -> None:
    assert count_lost_turns(acknowledged, stored) == lost


def _answer(at: float, status: int = 200, *, saved: bool = True) -> Answer:
    return Answer(at=at, latency=0.01, status=status, saved=saved)


def test_a_limit_that_holds_lets_through_only_its_quota_per_window() -> None:
    answers = [_answer(t / 10, 401 if t % 40 == 0 else 429) for t in range(300)]  # 30 s
    held = limits_held(answers, since=5.0, until=25.0)
    assert (held["guesses"], held["refused"], held["let_through"]) == (200, 195, 5)
    # 20 s overlap at most two windows of a minute: 2 x the drills' 5 failures a minute.
    assert held["let_through_at_most"] == 10 and held["other"] == {}
    failed_open = limits_held([_answer(t / 10, 401) for t in range(300)], since=5.0, until=25.0)
    assert failed_open["let_through"] > failed_open["let_through_at_most"]


def test_recovery_starts_with_the_final_run_of_good_answers() -> None:
    answers = [_answer(0.5, 503), _answer(1.0), _answer(1.2, 503), _answer(1.4), _answer(1.6)]
    assert _good_since(answers, since=0.0) == 1.4
    assert _good_since(answers, since=1.5) == 1.6
    assert _good_since([*answers, _answer(1.8, saved=False)], since=0.0) is None
    assert _good_since([], since=0.0) is None


def test_the_summary_and_the_report_are_the_committed_run(committed: dict[str, Any]) -> None:
    stale = "run `make drills` and commit what it writes"
    assert (REPO / "experiments/results/drills-summary.md").read_text() == summary_tables(
        committed
    ), stale
    assert (REPO / "experiments/results/drills.md").read_text() == markdown(committed), stale
    assert summary_tables(committed) in markdown(committed)  # the report opens with them


def test_the_drills_page_includes_the_summary() -> None:
    """The docs show experiments/results/drills-summary.md itself (pymdownx.snippets), not
    a copy of it."""
    page = DRILLS_PAGE.read_text()
    assert '--8<-- "experiments/results/drills-summary.md"' in page.splitlines()
    assert "| drill | before |" not in page  # no table of its own


def test_the_committed_run_kept_every_promise(committed: dict[str, Any]) -> None:
    assert committed["plan"]["name"] == "full"
    assert violations(committed) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.update(acknowledged_turns_lost=1), "acknowledged turns lost"),
        (lambda d: d.update(sessions_vanished=1), "sessions answered 404"),
        (lambda d: d.update(worst_ms=5_000), "a request took 5000 ms"),
        (lambda d: d.update(recovered_after_s=None), "not recovered"),
        (lambda d: d["phases"]["before"]["outcomes"].update({"503": 1}), "before the fault"),
        (lambda d: d["phases"]["during"].update(outcomes={"200": 9}), "during the fault"),
        (lambda d: d["phases"]["during"]["outcomes"].update({"500": 1}), "during the fault"),
        (lambda d: d["spans"].update({"exported": d["spans"]["exported"] - 1}), "ended !="),
        (lambda d: d["spans"].update({"stored in the trace store": 0.0}), "but stores 0"),
        # The limits: a guesser let through past what a working limit allows, a request
        # served unchecked (the limit store failed), a guess answered anything else.
        (lambda d: d["limits"].update(let_through=99), "99 guessed keys let through"),
        (lambda d: d["limits"].update(bypassed=3.0), "3 requests served without a rate-limit"),
        (lambda d: d["limits"].update(other={"500": 1}), "key guesses answered {'500': 1}"),
    ],
)
def test_a_broken_promise_is_reported(
    committed: dict[str, Any], change: Any, complaint: str
) -> None:
    result = copy.deepcopy(next(d for d in committed["drills"] if d["name"] == "redis-kill"))
    change(result)
    assert any(complaint in problem for problem in drill_violations(committed, result))
