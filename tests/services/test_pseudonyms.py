"""Session ids are credentials: telemetry carries a pseudonym for each."""

import logging
import uuid

import pytest

from services.telemetry import session_pseudonym
from services.telemetry._pseudonyms import SessionIdLogFilter, without_session_ids
from tests.services.conftest import SERVICES, Chain


def test_a_pseudonym_is_stable_one_way_and_no_session_id() -> None:
    session_id = uuid.uuid4().hex
    pseudonym = session_pseudonym(session_id)
    assert pseudonym == session_pseudonym(session_id)
    assert pseudonym != session_pseudonym(uuid.uuid4().hex)
    assert session_id not in pseudonym
    assert without_session_ids(pseudonym) == pseudonym  # not shaped like an id


def test_ids_are_replaced_wherever_they_stand_and_nothing_else_is() -> None:
    session_id = uuid.uuid4().hex
    pseudonym = session_pseudonym(session_id)
    assert without_session_ids(f"/chat/{session_id}/history") == f"/chat/{pseudonym}/history"
    assert without_session_ids(f"history:alice:{session_id}") == f"history:alice:{pseudonym}"
    assert without_session_ids(f"{session_id}?x={session_id}") == f"{pseudonym}?x={pseudonym}"
    digest = "ab" * 32  # a whole SHA-256, as reply cache keys are
    assert without_session_ids(f"/cache/reply:{digest}") == f"/cache/reply:{digest}"
    assert without_session_ids("Hello, World 0123") == "Hello, World 0123"


def test_log_records_lose_the_ids_in_their_arguments() -> None:
    session_id = uuid.uuid4().hex
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s failed", (session_id,), None)
    assert SessionIdLogFilter().filter(record)
    assert record.getMessage() == f"GET {session_pseudonym(session_id)} failed"


async def test_no_session_id_in_spans_logs_or_metrics(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    started = await chain.chat("hello")
    session_id = started.json()["session_id"]
    assert (await chain.chat("traces?", session_id=session_id)).status_code == 200
    history = await chain.gateway.get(
        f"/chat/{session_id}/history", headers={"X-API-Key": "demo-key"}
    )
    assert history.status_code == 200

    recorded = [span.to_json() for _, span in chain.all_spans()]
    recorded += [log.to_json() for log in chain.logs()]
    for service in SERVICES:
        recorded += [f"{name} {points}" for name, points in chain.metric_points(service).items()]
    recorded.append(capsys.readouterr().out)  # the JSON log lines
    everything = "\n".join(recorded)
    pseudonym = session_pseudonym(session_id)
    # The haystack is real: the history read's URL and chat's session.id are there.
    assert f"/chat/{pseudonym}/history" in everything
    assert f'"session.id": "{pseudonym}"' in everything
    assert session_id not in everything
