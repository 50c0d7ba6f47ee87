"""Steady, bounded chat traffic through the gateway, with every answer recorded:
the load of the fault drills (experiments.drills).

A few workers, each in a session of its own, each sending one ``POST /chat``
per ``period`` (at most; a slow answer delays its next request, never piles
requests up). Each answer is kept: when it was sent, its status, its latency,
and whether the turn was acknowledged (200 with ``history_saved``). Those
acknowledged turns are what :func:`count_lost_turns` later looks for in the
sessions' histories.
"""

import asyncio
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field

import httpx

# Half the messages repeat (cache hits after their first time), half are new.
TOPICS = ("hello", "what is a trace?", "tell me about metrics", "where do logs go?", "bye")

Turn = tuple[str, str]  # (message, reply)


@dataclass(frozen=True)
class Answer:
    """One request and what came back."""

    at: float  # when it was sent: seconds on the traffic's clock
    latency: float
    status: int  # 0: no response at all (connection failed, or the client gave up)
    saved: bool = False  # 200 with history_saved: the turn is acknowledged
    degraded: bool = False
    detail: str = ""  # the problem's detail, for an error

    @property
    def ok(self) -> bool:
        """Answered as if nothing were wrong."""
        return self.status == 200 and self.saved and not self.degraded

    @property
    def outcome(self) -> str:
        """The status, and for a 200 whether the turn was saved."""
        if self.status == 200:
            return "200" if self.saved else "200 not saved"
        return str(self.status) if self.status else "no answer"


@dataclass
class Session:
    session_id: str
    # Every turn answered with history_saved=true, in order.
    acknowledged: list[Turn] = field(default_factory=list)


def message_for(worker: int, turn: int) -> str:
    topic = TOPICS[turn % len(TOPICS)]
    return topic if turn % 2 else f"{topic} [{worker}.{turn}]"


class Traffic:
    """The load, and its record; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        gateway: str,
        api_key: str,
        *,
        workers: int,
        period: float,
        timeout: float,
        turns_per_session: int = 20,
    ) -> None:
        self.gateway = gateway
        self.api_key = api_key
        self.workers = workers
        self.period = period
        # The client gives up here: past the gateway's budget, a request is hung.
        self.timeout = timeout
        self.turns_per_session = turns_per_session
        self.started = time.monotonic()
        self.answers: list[Answer] = []
        self.sessions: dict[str, Session] = {}
        # Sessions that answered 404 although they had acknowledged turns.
        self.vanished: list[str] = []

    def clock(self) -> float:
        return time.monotonic() - self.started

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(
            base_url=self.gateway,
            headers={"X-API-Key": self.api_key},
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=self.workers),
        ) as client:
            await asyncio.gather(*(self._worker(client, n, stop) for n in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient, worker: int, stop: asyncio.Event) -> None:
        session: Session | None = None
        turn = 0
        in_session = 0
        while not stop.is_set():
            message = message_for(worker, turn)
            turn += 1
            answer, session_id, reply = await self._send(client, message, session)
            self.answers.append(answer)
            in_session += 1
            if answer.saved and session is None:
                session = self.sessions.setdefault(session_id, Session(session_id))
            if answer.saved and session is not None:
                session.acknowledged.append((message, reply))
            if answer.status == 404 and session is not None:
                self.vanished.append(session.session_id)
                session = None
            if in_session >= self.turns_per_session:
                session, in_session = None, 0
            # Steady: the next request one period after this one was sent.
            pause = answer.at + self.period - self.clock()
            if pause > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)

    async def _send(
        self, client: httpx.AsyncClient, message: str, session: Session | None
    ) -> tuple[Answer, str, str]:
        body = {"message": message} | ({"session_id": session.session_id} if session else {})
        at = self.clock()
        try:
            response = await client.post("/chat", json=body)
        except httpx.HTTPError as exc:
            return Answer(at, self.clock() - at, 0, detail=type(exc).__name__), "", ""
        latency = self.clock() - at
        payload = response.json()
        if response.status_code != 200:
            detail = str(payload.get("detail", ""))
            return Answer(at, latency, response.status_code, detail=detail), "", ""
        answer = Answer(
            at,
            latency,
            200,
            saved=payload["history_saved"],
            degraded=payload["degraded"],
        )
        return answer, payload["session_id"], payload["reply"]


class Guesser:
    """A client guessing API keys from a loopback address of its own (the other traffic
    comes from 127.0.0.1): one ``POST /chat`` with a wrong key per ``period``. Over its
    failed-authentication limit every request from that address is a 429, so a limit
    that holds answers most of them 429, and one that fails open answers all 401."""

    def __init__(
        self,
        gateway: str,
        *,
        period: float,
        clock: Callable[[], float],
        address: str = "127.0.0.2",
    ) -> None:
        self.gateway = gateway
        self.period = period
        self.clock = clock  # the steady traffic's, so that both share the drill's phases
        self.address = address
        self.answers: list[Answer] = []

    async def run(self, stop: asyncio.Event) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=self.address)
        async with httpx.AsyncClient(
            base_url=self.gateway, transport=transport, timeout=10
        ) as client:
            guess = 0
            while not stop.is_set():
                guess += 1
                at = self.clock()
                try:
                    response = await client.post(
                        "/chat",
                        json={"message": "hello"},
                        headers={"X-API-Key": f"guessed-key-{guess}"},
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append(Answer(at, self.clock() - at, status))
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.period)


def count_lost_turns(acknowledged: Iterable[Turn], stored: list[Turn]) -> int:
    """Acknowledged turns missing from a stored history, which must hold them in
    order (it may hold more: a turn saved whose answer never arrived)."""
    position, lost = 0, 0
    for turn in acknowledged:
        try:
            position = stored.index(turn, position) + 1
        except ValueError:
            lost += 1
    return lost


# The most turns a history page holds (the gateway's documented maximum).
HISTORY_PAGE = 100


async def stored_history(
    client: httpx.AsyncClient, session_id: str, *, retry_for: float
) -> list[Turn]:
    """A session's turns as the gateway returns them, every page of them ([] for
    an unknown session). A 5xx is retried for ``retry_for`` seconds: the drill
    may have just ended."""
    deadline = time.monotonic() + retry_for
    turns: list[Turn] = []
    params: dict[str, str | int] = {"limit": HISTORY_PAGE}
    while True:
        response = await client.get(f"/chat/{session_id}/history", params=params)
        if response.status_code == 404:
            return []
        if response.status_code == 200:
            page = response.json()
            turns += [(t["message"], t["reply"]) for t in page["turns"]]
            if page["next_cursor"] is None:
                return turns
            params["cursor"] = page["next_cursor"]  # a cursor survives a retry
            continue
        if time.monotonic() > deadline:
            response.raise_for_status()
        await asyncio.sleep(0.2)


async def lost_turns(
    gateway: str, api_key: str, sessions: Iterable[Session], *, retry_for: float = 30
) -> tuple[int, int]:
    """(acknowledged turns checked, of them missing) over ``sessions``."""
    checked, lost = 0, 0
    async with httpx.AsyncClient(
        base_url=gateway, headers={"X-API-Key": api_key}, timeout=10
    ) as client:
        for session in sessions:
            stored = await stored_history(client, session.session_id, retry_for=retry_for)
            checked += len(session.acknowledged)
            lost += count_lost_turns(session.acknowledged, stored)
    return checked, lost
