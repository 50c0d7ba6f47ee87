"""Request deadlines that nest across hops.

The gateway owns a request's time budget (``GATEWAY_REQUEST_BUDGET_SECONDS``).
Each hop bounds all of its own work (its handler, the thinking delay, Redis,
downstream calls) by what is left of it, less a margin for the way back, and
tells the next hop what is left in a request header. So the innermost hop runs
out first and answers 504 naming itself, and every hop above it relays that
answer before its own time is up: the client never waits much past the budget,
whatever hangs below.

    gateway   budget 5 s ──► deadline = start + 5 s - margin
    chat      header 4.98 s ──► deadline = start + 4.98 s - margin
    cache     header 4.95 s ──► ...

Budgets travel as a relative number of milliseconds, never as a clock time:
the hops' clocks need not agree.
"""

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import HttpMiddleware, response_status
from services.common.problems import problem_response

BUDGET_HEADER = "X-Request-Budget-Ms"
# ASCII digits only (str.isdigit() takes "²" and other scripts' digits), and few
# enough of them that int() stays cheap: 9 digits are over eleven days.
_MILLISECONDS = re.compile(r"[0-9]{1,9}")
# Kept back at each hop for sending the answer back up (and a little clock noise).
HOP_MARGIN_SECONDS = 0.05

_log = logging.getLogger(__name__)

# The current request's deadline, on time.monotonic()'s clock.
_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


def remaining_seconds() -> float | None:
    """What is left of the current request's budget (None outside a request)."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def budget_header() -> dict[str, str]:
    """The header that hands what is left to the next hop ({} outside a request)."""
    left = remaining_seconds()
    return {} if left is None else {BUDGET_HEADER: str(max(0, int(left * 1000)))}


@contextmanager
def _within(budget_seconds: float) -> Iterator[float]:
    deadline = time.monotonic() + budget_seconds - HOP_MARGIN_SECONDS
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


class DeadlineMiddleware(HttpMiddleware):
    """Bound each request by its budget; out of time, answer 504 naming this hop.

    ``own_budget_seconds`` (the gateway): every request gets it, and a budget
    header from outside is ignored. Otherwise the caller's header sets it,
    capped at ``max_budget_seconds`` (also the budget of a call without one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_budget_seconds: float,
        own_budget_seconds: float | None = None,
    ) -> None:
        super().__init__(app)
        self.service = service
        self.max_budget = max_budget_seconds
        self.own_budget = own_budget_seconds

    def _budget(self, scope: Scope) -> float | None:
        """The request's budget in seconds; None when the header is not a number."""
        if self.own_budget is not None:
            return self.own_budget
        sent = Headers(scope=scope).get(BUDGET_HEADER)
        if sent is None:
            return self.max_budget
        if not _MILLISECONDS.fullmatch(sent):
            return None
        return min(int(sent) / 1000, self.max_budget)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget = self._budget(scope)
        if budget is None:
            detail = f"{BUDGET_HEADER} must be a whole number of milliseconds (at most 9 digits)."
            await problem_response(400, "Bad Request", detail)(scope, receive, send)
            return
        with _within(budget) as deadline:
            try:
                loop_deadline = asyncio.get_running_loop().time() + (deadline - time.monotonic())
                async with asyncio.timeout_at(loop_deadline):
                    await self.app(scope, receive, send)
            except TimeoutError as exc:
                if response_status(scope) is not None:  # too late for another response
                    raise
                detail = f"{self.service}: out of time (request budget {budget * 1000:.0f} ms)."
                trace.get_current_span().record_exception(exc)
                _log.warning("%s %s: %s", scope["method"], scope["path"], detail)
                await problem_response(504, "Gateway Timeout", detail)(scope, receive, send)
