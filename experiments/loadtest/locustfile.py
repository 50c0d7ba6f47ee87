"""``make load``: people chatting with the gateway, for Locust (https://docs.locust.io/).

Each simulated user holds conversations: it starts a session, sends 3-6 turns
(some messages everyone asks, which the chat service has cached, and some new
ones, which it has not), reads the session's history, and thinks between turns.
A small share of its requests are deliberately bad, tagged ``bad`` (leave them
out with ``--exclude-tags bad``): a chat without an API key (401) and an
invalid body with a valid key (422). Each answer is checked against what was
expected, so a bad request that gets its 401 is a success and only unexpected
answers count as failures.

Telemetry: run with ``--otel`` (``make load`` does) and every request is a root
client span of service ``loadgen`` that sends its ``traceparent``, so traces
start at the client and the service graph shows ``loadgen -> gateway``.

Staying under the gateway's limits (``GATEWAY_RATE_LIMIT_PER_MINUTE``, 600 per
client id, and ``GATEWAY_AUTH_FAILURES_PER_MINUTE``, 20 per client address):

- users take the API keys in turn (``--api-keys``; by default the load-test keys
  of ``deploy/gateway/demo-secrets/api-keys.json``, one client id each), and every request
  is preceded by a think time of at least ``--think-min`` seconds, so each key
  sees at most users / keys / think-min requests per second;
- requests without a key count as failed authentications for this machine's
  address, so they are budgeted (``--no-key-per-minute``, under the gateway's
  20): past the budget, a bad request is an invalid body instead.

At the end it prints one line per endpoint (requests, failures, req/s,
p50/p95/p99) and checks the run against ``--max-failure-ratio`` and
``--max-p95-ms``: outside them, Locust exits with code 1 (an SLO check for CI).
"""

import itertools
import logging
import random
from collections.abc import Iterator
from typing import Any

from locust import HttpUser, events, tag, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

from experiments.loadtest.rules import (
    LOAD_TEST_API_KEYS,
    Budget,
    max_requests_per_minute_per_key,
    message,
    slo_violations,
    summary,
)

_log = logging.getLogger("loadgen")

CHAT = "/chat"
HISTORY = "/chat/{session_id}/history"
NO_KEY = "/chat [bad: no key]"
INVALID_BODY = "/chat [bad: invalid body]"


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--api-keys",
        default=",".join(LOAD_TEST_API_KEYS),
        help="API keys, comma-separated: users take them in turn",
        env_var="LOCUST_API_KEYS",
        is_secret=True,
    )
    parser.add_argument("--think-min", type=float, default=1.0, env_var="LOCUST_THINK_MIN")
    parser.add_argument("--think-max", type=float, default=3.0, env_var="LOCUST_THINK_MAX")
    parser.add_argument(
        "--no-key-per-minute",
        type=float,
        default=10,
        help="requests without a key at most (the gateway locks an address out past 20)",
        env_var="LOCUST_NO_KEY_PER_MINUTE",
    )
    parser.add_argument(
        "--rate-limit-per-minute",
        type=float,
        default=600,
        help="the gateway's GATEWAY_RATE_LIMIT_PER_MINUTE, to warn before users would pass it",
        env_var="LOCUST_RATE_LIMIT_PER_MINUTE",
    )
    parser.add_argument(
        "--max-failure-ratio",
        type=float,
        default=0.01,
        help="SLO: exit 1 when more of the requests failed",
        env_var="LOCUST_MAX_FAILURE_RATIO",
    )
    parser.add_argument(
        "--max-p95-ms",
        type=float,
        default=1000,
        help="SLO: exit 1 when the 95th percentile of all requests is slower",
        env_var="LOCUST_MAX_P95_MS",
    )


_keys: Iterator[str] = iter(())
_no_key_budget = Budget(0)


@events.init.add_listener
def _setup(environment: Environment, **_: Any) -> None:
    global _keys, _no_key_budget
    options = environment.parsed_options
    if options is None:
        return
    keys = [key.strip() for key in options.api_keys.split(",") if key.strip()]
    if not keys:
        raise SystemExit("--api-keys: no API key given")
    _keys = itertools.cycle(keys)
    _no_key_budget = Budget(options.no_key_per_minute)
    if options.think_min <= 0 or options.think_max < options.think_min:
        raise SystemExit("--think-min must be > 0 and at most --think-max")
    worst = max_requests_per_minute_per_key(options.num_users or 1, len(keys), options.think_min)
    if worst > options.rate_limit_per_minute:
        _log.warning(
            "%d users on %d API keys may send %.0f requests per minute per key, over the "
            "gateway's %.0f: expect 429s (add keys with --api-keys, or think longer)",
            options.num_users,
            len(keys),
            worst,
            options.rate_limit_per_minute,
        )


class ChatUser(HttpUser):
    """Someone chatting: conversations of 3-6 turns, then the history."""

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        assert options is not None
        return random.uniform(options.think_min, options.think_max)  # noqa: S311 (a workload)

    def on_start(self) -> None:
        self.api_key = next(_keys)
        self.rng = random.Random()  # noqa: S311 (a workload, not a secret)

    @task(9)
    def conversation(self) -> None:
        session_id: str | None = None
        for turn in range(self.rng.randint(3, 6)):
            if turn:
                self.wait()  # thinking; a stopping run can end the user here
            session_id = self._chat(message(self.rng), session_id)
            if session_id is None:
                return  # the failure is recorded; a new conversation starts
        self.wait()
        if session_id is not None:
            self._history(session_id)

    @tag("bad")
    @task(1)
    def bad_request(self) -> None:
        if _no_key_budget.take():
            self._expect(401, "POST", NO_KEY, json={"message": "hello"}, headers={})
        else:
            body = {"message": ""}  # 1-2000 characters
            self._expect(422, "POST", INVALID_BODY, json=body, headers=self._auth())

    def _auth(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def _chat(self, text: str, session_id: str | None) -> str | None:
        body: dict[str, str] = {"message": text}
        if session_id:
            body["session_id"] = session_id
        with self.client.post(
            CHAT, json=body, headers=self._auth(), name=CHAT, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return None
            new_id: str = response.json()["session_id"]
            return new_id

    def _history(self, session_id: str) -> None:
        with self.client.get(
            HISTORY.format(session_id=session_id),
            headers=self._auth(),
            name=HISTORY,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")

    def _expect(self, status: int, method: str, name: str, **kwargs: Any) -> None:
        with self.client.request(
            method, CHAT, name=name, catch_response=True, **kwargs
        ) as response:
            if response.status_code == status:
                response.success()
            else:
                response.failure(f"expected {status}, got {response.status_code}")


@events.quitting.add_listener
def _report(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or environment.stats is None:
        return
    stats = environment.stats
    print("\n" + summary(list(stats.entries.values()), stats.total))
    broken = slo_violations(
        stats.total, max_failure_ratio=options.max_failure_ratio, max_p95_ms=options.max_p95_ms
    )
    if broken:
        print("SLO check FAILED: " + "; ".join(broken))
        environment.process_exit_code = 1
    else:
        # Not Locust's default (1 on any failure): within the SLO is a pass.
        environment.process_exit_code = 0
        print(
            f"SLO check passed (failure ratio <= {options.max_failure_ratio}, "
            f"p95 <= {options.max_p95_ms:.0f} ms)"
        )
