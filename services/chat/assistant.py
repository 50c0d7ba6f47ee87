"""A deterministic toy assistant: rules, not a model, so it runs anywhere.

The same message always gets the same reply, which is what makes replies
cacheable.
"""

import hashlib
import re

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(hi|hello|hey)\b"), "Hello! Ask me about traces, metrics or logs."),
    (
        re.compile(r"\btraces?\b|\bspans?\b"),
        "A trace is a tree of spans; this reply's trace crosses gateway, chat, cache and Redis.",
    ),
    (
        re.compile(r"\bmetrics?\b"),
        "Every service exports request-duration histograms; exemplars link them to traces.",
    ),
    (re.compile(r"\blogs?\b"), "Every log line carries the trace_id of the request that wrote it."),
    (re.compile(r"\b(bye|goodbye)\b"), "Goodbye! Your session history stays in Redis."),
)


def normalize(message: str) -> str:
    """The form replies are cached under: case and spacing do not matter."""
    return " ".join(message.casefold().split())


def reply_cache_key(message: str) -> str:
    """The whole SHA-256 (64 hex digits): never shaped like a session id, which
    telemetry replaces wherever it sees one (services/telemetry/_pseudonyms.py)."""
    digest = hashlib.sha256(normalize(message).encode()).hexdigest()
    return f"reply:{digest}"


def compose_reply(message: str) -> str:
    text = normalize(message)
    for pattern, reply in _RULES:
        if pattern.search(text):
            return reply
    words = len(text.split())
    return f"You said {words} word{'s' if words != 1 else ''}; try asking about traces."


def thinking_delay_seconds(message: str, *, base_ms: int, per_char_ms: float, max_ms: int) -> float:
    """Longer messages take longer to "think" about, up to a cap."""
    return min(base_ms + per_char_ms * len(message), max_ms) / 1000
