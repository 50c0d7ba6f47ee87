"""Who is calling: an API key maps to a client id."""

import hmac

from services.common.problems import ProblemError

API_KEY_HEADER = "X-API-Key"
_ASK = {"WWW-Authenticate": "ApiKey"}  # how a 401 says which credentials it wants


def client_for_key(api_key: str | None, api_keys: dict[str, str]) -> str:
    """The client id an API key belongs to; 401 when missing or unknown.

    Compares in constant time against every key, so timing does not reveal
    how much of a guessed key was right.
    """
    if not api_key:
        raise ProblemError(401, f"Send your API key in the {API_KEY_HEADER} header.", headers=_ASK)
    client_id = None
    for known_key, known_client in api_keys.items():
        if hmac.compare_digest(api_key.encode(), known_key.encode()):
            client_id = known_client
    if client_id is None:
        raise ProblemError(401, "Unknown API key.", headers=_ASK)
    return client_id
