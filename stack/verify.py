"""``make verify-stack``: what a user checks after ``make up``, as one script.

    python -m stack.verify                        # the stack running here (as make trace finds it)
    python -m stack.verify --stack kubernetes     # a cluster port-forwarded to compose's ports
    python -m stack.verify --scenario slow-redis  # after `make fault SCENARIO=slow-redis`
    python -m stack.verify --after-down           # after `make down VOLUMES=1`: nothing left

Checks, in this order (each waits up to ``--timeout`` for its data, then the next runs):

  health         every container (Docker), process (native) or pod (Kubernetes) up and
                 healthy (stack.health)
  trace          a new chat request's trace complete in the trace store, printed as
                 `make trace` prints it (its own code: traces.view)
  logs           the log store returns that trace's log lines by trace_id, from the
                 gateway and chat
  span-metrics   Prometheus has the span metrics of every service
  service-graph  ... and every edge of services/registry.py in the service graph
  exemplars      the gateway's latency histogram has exemplars, and the newest of them
                 name traces the trace store has
  dashboards     every Prometheus query of every dashboard panel returns data (the
                 queries as a user first opening the dashboard runs them)
  grafana        Grafana's API: healthy, every provisioned data source's health check
                 OK, every dashboard present (Docker and Kubernetes: the native stack has
                 no Grafana, so there it is skipped)

The stores: Tempo, Loki, Prometheus and Grafana on the ports docker-compose.yml
publishes on localhost (Docker, or a cluster with those ports forwarded); Jaeger,
VictoriaLogs and Prometheus at the ports of the native stack recorded in ``.run/``.
The checks send a few chat requests of their own first, so a fresh stack has data.

``--scenario NAME``: instead, while sending steady chat traffic, wait until the
scenario's alert (stack.faults) is active in Prometheus (pending or firing) with its
labels. ``--after-down``: instead, check that no container, volume or network of the
project (Docker), or no process and no port (native), is left.

Exit status 0 when every check passes, 1 when one fails, 2 for a usage error.
"""

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from checks.grafana import DASHBOARDS, substitute, walk_panels
from checks.stack import grafana_datasources, read_env
from services import registry
from services.gateway.settings import DEMO_API_KEY
from stack import health
from stack.backends import Backends
from stack.faults import SCENARIOS, Scenario
from stack.native import REPO, RUN_DIR, NativeStack, Ports
from stack.processes import wait_until
from traces.otlp_json import StoredSpan
from traces.stores import DockerStores, NativeStores, StackDownError, Stores
from traces.trace_id import full_trace_id
from traces.view import TraceError, send_chat, trace_view
from traces.waterfall import TraceView, print_view

CHECKS = (
    "health",
    "trace",
    "logs",
    "span-metrics",
    "service-graph",
    "exemplars",
    "dashboards",
    "grafana",
)
# Grafana's variables as a user first opening a dashboard has them: every service.
VARIABLES = {"service": ".*", "trace_id": ".*", "search": ""}
# The service graph names a Redis by its client spans' db.system.name: both are "redis".
SERVICE_GRAPH_EDGES = sorted(
    {(c, "redis" if s in registry.REDISES else s) for c, s in registry.edges()}
)
GRAFANA_URL = "http://localhost:3000"  # docker-compose.yml publishes it here
# The services that log while serving a chat request (the cache logs only failures).
LOGGING_SERVICES = {"gateway", "chat"}
# Checks that read metrics: a few chats are sent before the first of them runs.
METRIC_CHECKS = {"span-metrics", "service-graph", "exemplars", "dashboards"}


class CheckFailedError(Exception):
    """A check found the stack wrong; the message says what."""


@dataclass(frozen=True)
class Grafana:
    """Grafana's HTTP API, as its admin (the data source health checks need more than
    the anonymous Viewer of docker-compose.yml)."""

    url: str
    user: str
    password: str

    def get(self, path: str) -> Any:
        """The JSON at ``path``; None for a 404."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(  # noqa: S310 (the Grafana the user points us at)
            f"{self.url}{path}", headers={"Authorization": f"Basic {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 400:  # a data source's failed health check: its JSON says why
                with contextlib.suppress(ValueError):
                    return json.loads(exc.read())
            raise CheckFailedError(f"Grafana answered {exc.code} for {path}") from exc


@dataclass(frozen=True)
class Target:
    """The running stack, as the checks see it."""

    side: str  # "docker", "native" or "kubernetes"
    stores: Stores  # trace and log store, and the gateway (traces.stores)
    prometheus: Backends
    problems: Callable[[], list[str]]  # stack.health for this side
    grafana: Grafana | None = None


@dataclass
class Outcome:
    check: str
    passed: bool | None  # None: skipped
    detail: str


def dashboard_queries(variables: dict[str, str] = VARIABLES) -> list[tuple[str, str]]:
    """(where, PromQL) of every Prometheus query of every dashboard panel, Grafana's
    variables replaced by ``variables`` (checks.grafana.substitute)."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in walk_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                datasource = target.get("datasource") or panel.get("datasource") or {}
                if datasource.get("uid") == "prometheus" and target.get("expr"):
                    where = f"{path.stem}: {panel['title']} {target['refId']}"
                    queries.append((where, substitute(target["expr"], variables)))
    return queries


def grafana_problems(
    health_answer: Mapping[str, Any] | None,
    datasources: Mapping[str, tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]],
    dashboards: Mapping[str, Mapping[str, Any] | None],
) -> list[str]:
    """What Grafana's answers show wrong: ``/api/health``; for each provisioned data
    source, ``/api/datasources/uid/<uid>`` and its ``/health``; for each dashboard
    file, ``/api/dashboards/uid/<uid>`` (None where Grafana answered 404)."""
    problems = []
    if not health_answer or health_answer.get("database") != "ok":
        problems.append(f"/api/health: {health_answer}")
    for uid, (definition, answer) in sorted(datasources.items()):
        if definition is None:
            problems.append(f"data source {uid}: not provisioned")
        elif answer is None:
            problems.append(f"data source {uid}: no health check (is its plugin loaded?)")
        elif answer.get("status") != "OK":
            problems.append(f"data source {uid}: {answer.get('status')}: {answer.get('message')}")
    for uid, answer in sorted(dashboards.items()):
        if answer is None:
            problems.append(f"dashboard {uid}: not provisioned")
    return problems


def exemplar_trace_ids(body: Mapping[str, Any]) -> list[str]:
    """The trace ids of an ``/api/v1/query_exemplars`` answer, newest first."""
    exemplars = [
        (float(exemplar["timestamp"]), full_trace_id(exemplar["labels"]["trace_id"]))
        for series in body["data"]
        for exemplar in series["exemplars"]
        if "trace_id" in exemplar["labels"]
    ]
    return list(dict.fromkeys(trace_id for _, trace_id in sorted(exemplars, reverse=True)))


def active_alert(alerts: Iterable[Mapping[str, Any]], scenario: Scenario) -> str | None:
    """The state (pending or firing) of the scenario's alert among Prometheus'
    ``/api/v1/alerts``, with the scenario's labels; None while it is not active."""
    for alert in alerts:
        labels = alert.get("labels", {})
        wanted = {"alertname": scenario.alert, **scenario.alert_labels}
        if wanted.items() <= labels.items() and alert.get("state") in ("pending", "firing"):
            return str(alert["state"])
    return None


@dataclass
class Verification:
    """The checks, in order, against one target; each records an Outcome."""

    target: Target
    timeout: float
    api_key: str
    outcomes: list[Outcome] = field(default_factory=list)
    view: TraceView | None = None
    traffic_sent: bool = False

    def send_traffic(self) -> None:
        """Data for the metric checks: three new messages, then the same again (cache
        misses, then hits), each a trace with its metrics, logs and exemplars."""
        messages = [f"verify-stack {topic} {uuid.uuid4().hex[:6]}" for topic in ("a", "b", "c")]
        for message in messages * 2:
            send_chat(self.target.stores, self.api_key, message, None)
        self.traffic_sent = True

    def run(self, names: Iterable[str]) -> list[Outcome]:
        for name in names:
            self.outcomes.append(self._outcome(name))
            print(_line(self.outcomes[-1]), flush=True)
        return self.outcomes

    def _outcome(self, name: str) -> Outcome:
        if name == "grafana" and self.target.grafana is None:
            return Outcome(name, None, "no Grafana in the native stack (the stores' APIs stand in)")
        try:
            if name in METRIC_CHECKS and not self.traffic_sent:
                self.send_traffic()
            detail: str = getattr(self, name.replace("-", "_"))()
        except (CheckFailedError, TraceError, StackDownError, TimeoutError, OSError) as exc:
            return Outcome(name, False, str(exc))
        return Outcome(name, True, detail)

    def health(self) -> str:
        problems = self.target.problems()
        if problems:
            raise CheckFailedError("; ".join(problems))
        return f"every part of the {self.target.side} stack is up and healthy"

    def trace(self) -> str:
        message = f"verify-stack {uuid.uuid4().hex[:6]}"
        self.view = trace_view(
            self.target.stores,
            trace_id=None,
            message=message,
            session=None,
            api_key=self.api_key,
            timeout=self.timeout,
        )
        print_view(self.view)
        services = {span.service for span in self.view.spans}
        if services != set(registry.names()):
            raise CheckFailedError(
                f"trace {self.view.trace_id} has spans of {sorted(services)} only"
            )
        if self.view.request is None or self.view.request.status != 200:
            status = self.view.request.status if self.view.request else "none"
            raise CheckFailedError(f"the request of trace {self.view.trace_id} answered {status}")
        stores = self.target.stores
        return f"trace {self.view.trace_id}: {len(self.view.spans)} spans in {stores.trace_store}"

    def logs(self) -> str:
        view, stores = self.view, self.target.stores
        if view is None:
            raise CheckFailedError("needs the trace check's trace")
        # make trace stops reading once two reads agree; a service's lines may come later.
        lines = view.logs
        services = {line.service for line in lines}
        deadline = time.monotonic() + self.timeout
        while not services >= LOGGING_SERVICES and time.monotonic() < deadline:
            time.sleep(1)
            lines = stores.logs(view.trace_id, view.start_ns, view.end_ns)
            services = {line.service for line in lines}
        if not services >= LOGGING_SERVICES:
            raise CheckFailedError(
                f"{stores.log_store} has log lines of trace {view.trace_id} from "
                f"{sorted(services) or 'no service'}; expected {sorted(LOGGING_SERVICES)}"
            )
        return f"{len(lines)} log lines of the trace in {stores.log_store}, by its trace_id"

    def span_metrics(self) -> str:
        queries = {
            s: f'traces_span_metrics_calls_total{{service_name="{s}"}}' for s in registry.names()
        }
        return self._all_have_data(queries, "span metrics")

    def service_graph(self) -> str:
        queries = {
            f"{c} -> {s}": f'traces_service_graph_request_total{{client="{c}", server="{s}"}}'
            for c, s in SERVICE_GRAPH_EDGES
        }
        return self._all_have_data(queries, "service graph edges")

    def exemplars(self) -> str:
        def traces() -> list[str] | None:
            now = time.time()
            body = self.target.prometheus.get_json(
                self.target.prometheus.ports.prometheus,
                "/api/v1/query_exemplars",
                query='http_server_request_duration_seconds_bucket{service_name="gateway"}',
                start=str(now - 3600),
                end=str(now + 60),
            )
            return exemplar_trace_ids(body)[:5] or None

        trace_ids = wait_until(
            traces, timeout=self.timeout, what="exemplars with trace ids", interval=1
        )
        stores = self.target.stores
        for trace_id in trace_ids:

            def stored(t: str = trace_id) -> list[StoredSpan] | None:
                return stores.spans(t) or None

            wait_until(
                stored,
                timeout=self.timeout,
                what=f"exemplar trace {trace_id} in {stores.trace_store}",
                interval=1,
            )
        return f"the newest exemplars ({len(trace_ids)}) lead to traces in {stores.trace_store}"

    def dashboards(self) -> str:
        return self._all_have_data(dict(dashboard_queries()), "dashboard queries")

    def grafana(self) -> str:
        grafana = self.target.grafana
        assert grafana is not None  # run() skips this check without Grafana
        uids = [str(source["uid"]) for source in grafana_datasources()]
        files = sorted(DASHBOARDS.glob("*.json"))
        dashboards = [str(json.loads(path.read_text())["uid"]) for path in files]

        problems: list[str] = []

        def healthy() -> bool | None:
            problems[:] = grafana_problems(
                grafana.get("/api/health"),
                {
                    uid: (
                        grafana.get(f"/api/datasources/uid/{uid}"),
                        grafana.get(f"/api/datasources/uid/{uid}/health"),
                    )
                    for uid in uids
                },
                {uid: grafana.get(f"/api/dashboards/uid/{uid}") for uid in dashboards},
            )
            return None if problems else True

        try:
            wait_until(healthy, timeout=self.timeout, what="Grafana", interval=2)
        except TimeoutError as exc:
            raise CheckFailedError("; ".join(problems) or str(exc)) from exc
        return f"healthy; data sources {', '.join(uids)} OK; {len(dashboards)} dashboards present"

    def _all_have_data(self, queries: Mapping[str, str], what: str) -> str:
        """Poll every query until each has returned data once, or the time is up."""
        waiting = dict(queries)
        deadline = time.monotonic() + self.timeout
        while waiting:
            for name, expr in list(waiting.items()):
                try:
                    if self.target.prometheus.promql(expr):
                        del waiting[name]
                except (OSError, AssertionError):  # Prometheus not answering yet
                    pass
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(1)
        if waiting:
            listed = "; ".join(f"{name}: {queries[name]}" for name in waiting)
            raise CheckFailedError(
                f"{len(waiting)} of {len(queries)} {what} have no data: {listed}"
            )
        return f"all {len(queries)} {what} have data"


def verify_alert(target: Target, scenario: Scenario, *, timeout: float, api_key: str) -> Outcome:
    """Steady chat traffic until the scenario's alert is active, or the time is up."""
    deadline = time.monotonic() + timeout
    for n in itertools.count():
        # The traffic that makes the failure show (its answers do not matter here): new
        # messages, whose replies take the whole path (Redis reads and writes, the chat's
        # thinking), and every third one a repeat, a cache hit when the cache works.
        message = f"verify-stack {scenario.name}" if n % 3 == 0 else f"verify-stack {uuid.uuid4()}"
        with contextlib.suppress(TraceError):
            send_chat(target.stores, api_key, message, None)
        try:
            body = target.prometheus.get_json(target.prometheus.ports.prometheus, "/api/v1/alerts")
            state = active_alert(body["data"]["alerts"], scenario)
        except OSError:
            state = None
        if state is not None:
            return Outcome(f"alert {scenario.alert}", True, f"{state} during {scenario.name}")
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    return Outcome(
        f"alert {scenario.alert}",
        False,
        f"not active within {timeout:.0f} s of {scenario.name} (Prometheus /alerts)",
    )


def find_target(side: str | None, *, grafana_password: str) -> Target:
    """The stack to check: ``side`` if given, else the native one recorded as running
    in ``.run/`` (STACK_RUN_DIR), else Docker's."""
    native = NativeStack.load(RUN_DIR)
    if side is None:
        side = "native" if native is not None and native.running else "docker"
    if side == "native":
        if native is None:
            raise SystemExit(f"verify-stack: no native stack recorded in {RUN_DIR} (make up first)")
        return Target(
            "native",
            NativeStores(native.ports),
            Backends(native.ports),
            lambda: health.native_problems(native),
        )
    problems = health.kubernetes_problems if side == "kubernetes" else health.docker_problems
    return Target(
        side,
        DockerStores(),
        # Docker publishes Prometheus on the native default port, 9090 (so does the
        # port-forward of docs/run/kubernetes.md).
        Backends(Ports()),
        problems,
        Grafana(GRAFANA_URL, "admin", grafana_password),
    )


def _line(outcome: Outcome) -> str:
    mark = {True: "PASS", False: "FAIL", None: "SKIP"}[outcome.passed]
    return f"{mark} {outcome.check}: {outcome.detail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack.verify", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", choices=("docker", "native", "kubernetes"), help="which stack")
    parser.add_argument("--check", action="append", choices=CHECKS, help="only these (repeatable)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--scenario", choices=sorted(SCENARIOS), help="wait for this fault's alert")
    mode.add_argument("--after-down", action="store_true", help="check that nothing is left")
    parser.add_argument("--timeout", type=float, default=180, help="seconds each check may wait")
    args = parser.parse_args(argv)
    api_key = os.environ.get("API_KEY", DEMO_API_KEY)
    # Grafana's admin password: compose takes it from .env (GRAFANA_ADMIN_PASSWORD).
    password = os.environ.get("GRAFANA_ADMIN_PASSWORD") or read_env(REPO / ".env").get(
        "GRAFANA_ADMIN_PASSWORD", ""
    )

    if args.after_down:
        # `make down` forgets a native stack (its state file goes): without --stack,
        # Docker's side where a docker CLI is installed, else the native one.
        recorded = NativeStack.load(RUN_DIR)
        side = args.stack or ("docker" if recorded is None and shutil.which("docker") else "native")
        if side == "native":
            ports = recorded.ports if recorded else Ports()
            problems = health.native_leftovers(recorded, ports)
        else:
            problems = health.docker_leftovers()
        outcome = Outcome("after-down", not problems, "; ".join(problems) or "nothing left")
        print(_line(outcome))
        return 0 if outcome.passed else 1

    target = find_target(args.stack, grafana_password=password)
    print(f"verifying the {target.side} stack", flush=True)
    if args.scenario:
        outcome = verify_alert(
            target, SCENARIOS[args.scenario], timeout=args.timeout, api_key=api_key
        )
        print(_line(outcome))
        return 0 if outcome.passed else 1

    outcomes = Verification(target, args.timeout, api_key).run(args.check or CHECKS)
    failed = [o.check for o in outcomes if o.passed is False]
    skipped = [o.check for o in outcomes if o.passed is None]
    print(
        f"\nverify-stack: {len(outcomes) - len(failed) - len(skipped)} passed, "
        f"{len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}, "
        f"{len(skipped)} skipped"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
