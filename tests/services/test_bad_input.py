"""Bad requests get a clear problem+json 4xx and store nothing."""

from typing import Any

import pytest

from services.gateway.settings import DEMO_API_KEY
from tests.services.conftest import Chain

KEY = {"X-API-Key": DEMO_API_KEY}
JSON = {"Content-Type": "application/json"}
UNKNOWN = "0123456789abcdef0123456789abcdef"


def _chat(body: object, headers: dict[str, str] = KEY) -> dict[str, Any]:
    return {"json": body, "headers": headers}


@pytest.mark.parametrize(
    ("case", "request_args", "status", "detail"),
    [
        ("malformed JSON", {"content": b'{"message": ', "headers": KEY | JSON}, 400, "valid JSON"),
        ("missing message", _chat({}), 422, "not valid"),
        ("empty message", _chat({"message": "   "}), 422, "not valid"),
        ("oversized message", _chat({"message": "x" * 2001}), 422, "not valid"),
        ("body over 16 KiB", _chat({"message": "x" * 17_000}), 413, "larger than 16384 bytes"),
        ("malformed session id", _chat({"message": "hi", "session_id": "../x"}), 422, "not valid"),
        ("unknown session", _chat({"message": "hi", "session_id": UNKNOWN}), 404, "Unknown"),
        ("missing API key", _chat({"message": "hi"}, {}), 401, "X-API-Key"),
        ("wrong API key", _chat({"message": "hi"}, {"X-API-Key": "no"}), 401, "Unknown API"),
    ],
)  # fmt: skip
async def test_rejected_chat_requests(
    chain: Chain, case: str, request_args: dict[str, Any], status: int, detail: str
) -> None:
    response = await chain.gateway.post("/chat", **request_args)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert detail in problem["detail"]
    assert "Traceback" not in response.text
    assert chain.stored_keys() == [], f"{case} wrote something"


async def test_problems_name_the_invalid_field_without_echoing_it(chain: Chain) -> None:
    response = await chain.gateway.post("/chat", json={"message": "y" * 2001}, headers=KEY)
    errors = response.json()["errors"]
    assert errors == [
        {
            "loc": ["body", "message"],
            "msg": "String should have at most 2000 characters",
            "type": "string_too_long",
        }
    ]
    assert "yyyy" not in response.text


async def test_unknown_session_history_is_404(chain: Chain) -> None:
    response = await chain.gateway.get(f"/chat/{UNKNOWN}/history", headers=KEY)
    assert response.status_code == 404
    assert response.json()["detail"] == f"Unknown session '{UNKNOWN}'."


async def test_history_lists_the_turns_of_a_session(chain: Chain) -> None:
    first = (await chain.chat("hello")).json()
    await chain.chat("logs?", session_id=first["session_id"])
    response = await chain.gateway.get(f"/chat/{first['session_id']}/history", headers=KEY)
    assert response.status_code == 200
    turns = response.json()["turns"]
    assert [(t["message"], t["cached"]) for t in turns] == [("hello", False), ("logs?", False)]
    assert turns[0]["reply"] == first["reply"]
    unauthenticated = await chain.gateway.get(f"/chat/{first['session_id']}/history")
    assert unauthenticated.status_code == 401
