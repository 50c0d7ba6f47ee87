"""Break the running system under steady traffic: nothing acknowledged is lost,
nothing hangs, every fault looks like itself, everything recovers, and the
telemetry counts say what was lost on the way (experiments.drills)."""

from typing import Any

import pytest

from experiments.drills import DRILLS, UNSAVED, drill_violations
from tests.experiments.drills.conftest import drill


@pytest.mark.parametrize("name", [d.name for d in DRILLS])
def test_the_drill_keeps_every_promise(report: dict[str, Any], name: str) -> None:
    """No acknowledged turn lost, no request past the budget, the expected
    statuses before and during the fault, recovery, span counts that add up."""
    assert drill_violations(report, drill(report, name)) == []


def test_a_full_redis_evicts_nothing_and_keeps_every_history(report: dict[str, Any]) -> None:
    notes = drill(report, "redis-full")["notes"]
    # Filled through the gateway, as any client could, until Redis refused a turn ...
    assert notes["refused_a_turn"] and notes["filler_turns_saved"] > 0, notes
    assert notes["writes_refused_oom"] > 0
    # ... and nothing was evicted in either Redis: every history and every acknowledged
    # turn in it is still there, and so is every rate-limit counter.
    assert notes["keys_evicted"] == notes["limit_keys_evicted"] == 0
    assert notes["histories_after_fill"] >= notes["histories_before_fill"] > 0
    assert notes["acknowledged_turns_checked_after_fill"] > 0
    assert notes["acknowledged_turns_lost_after_fill"] == 0


def test_a_full_redis_refuses_and_the_chat_says_the_turn_was_not_saved(
    report: dict[str, Any],
) -> None:
    result = drill(report, "redis-full")
    # While Redis refused every write, chat kept answering and said so each time;
    # and no turn it called saved is missing (the drill read every history back).
    full = result["phases"]["full"]["outcomes"]
    assert list(full) == [UNSAVED], full
    assert result["acknowledged_turns_lost"] == 0


def test_the_limits_hold_while_the_data_redis_is_full(report: dict[str, Any]) -> None:
    """The key guesser's lockout kept refusing it while the sessions filled Redis and
    while Redis refused every write: the limits live in a Redis of their own."""
    limits = drill(report, "redis-full")["limits"]
    assert limits["bypassed"] == 0, limits
    assert limits["let_through"] <= limits["let_through_at_most"] < limits["guesses"] / 2
    assert limits["refused"] + limits["let_through"] == limits["guesses"]


@pytest.mark.parametrize("name", ["redis-stop", "redis-kill"])
def test_a_redis_restart_keeps_every_acknowledged_turn(report: dict[str, Any], name: str) -> None:
    """SIGTERM or SIGKILL, then the same port and data dir: the sessions that had
    turns before the restart have every one of them after it (append-only file)."""
    result = drill(report, name)
    saved = {phase: result["phases"][phase]["outcomes"].get("200", 0) for phase in result["phases"]}
    assert saved["before"] > 0 and saved["after"] > 0, saved
    assert (result["acknowledged_turns"] > 0, result["acknowledged_turns_lost"]) == (True, 0)


def test_a_collector_outage_changes_no_status_and_the_sdks_count_what_it_cost(
    report: dict[str, Any],
) -> None:
    result = drill(report, "collector-stop")
    assert {p: set(v["outcomes"]) for p, v in result["phases"].items()} == {
        "before": {"200"},
        "during": {"200"},
        "after": {"200"},
    }
    spans, logs = result["spans"], result["logs"]
    # The outage was felt: batches failed, and the (small) queues overflowed.
    assert spans["export failed"] > 0 and spans["dropped (queue full)"] > 0, spans
    # Every span that ended is accounted for, and every one exported is stored.
    assert spans["ended"] == (
        spans["dropped (queue full)"] + spans["export failed"] + spans["exported"]
    ), spans
    assert spans["exported"] == spans["received by the trace store"], spans
    assert spans["received by the trace store"] == spans["stored in the trace store"], spans
    assert logs["export failed"] > 0, logs
    assert (
        logs["emitted"] == logs["dropped (queue full)"] + logs["export failed"] + logs["exported"]
    )
    assert logs["exported"] == logs["stored in the log store"], logs
    # Once the Collector is back, new telemetry reaches every store.
    assert result["telemetry_flowing_after_s"] is not None
    arrived = result["arrived_after_restore"]
    assert arrived["spans"] > 0 and arrived["log_records"] > 0, arrived
    assert arrived["metrics_newer_by_s"] > 0, arrived


def test_a_collector_crash_loses_only_what_it_held(report: dict[str, Any]) -> None:
    spans = drill(report, "collector-kill")["spans"]
    assert spans["ended"] == (
        spans["dropped (queue full)"] + spans["export failed"] + spans["exported"]
    ), spans
    assert spans["exported"] >= spans["received by the trace store"], spans
    assert spans["received by the trace store"] == spans["stored in the trace store"], spans
