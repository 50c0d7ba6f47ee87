"""``make bench``: what telemetry costs, measured in one run on one machine.

Copies of the chain gateway -> chat -> cache run side by side against the same two
Redis servers (a database of each per copy), the same code with the same settings but
for one variant each:

==============  ==============================================================
off             ``OTEL_SDK_DISABLED=true``: the same code and wrappers, nothing
                recorded or exported
on              full telemetry (traces at 100%, metrics, logs) through the real
                Collector into the stores; FastAPI's native server telemetry
on_contrib      the same, with opentelemetry-instrumentation-fastapi instead
                (``*_SERVER_INSTRUMENTATION=contrib``)
off_httptools   ``off``, with the gateway on httptools instead of h11 (what the
                gateway's header-size limit costs: deploy/gateway/uvicorn.env)
==============  ==============================================================

wrk loads each variant's gateway in turn, for several rounds, the order rotating
each round. Per variant: median throughput, latency percentiles (medians of the
rounds'), and the CPU seconds per request of every process (the chain's three,
the Collector, both Redis servers, the stores, and wrk itself, to show it is not the
bottleneck), read from /proc around each round. Spans: how many the services
ended, and how many reached the trace store. A run with a failed request is
rejected.

The chat service's simulated thinking and the gateway's rate limit are off:
with them, the chain would mostly sleep (or answer 429) and every variant would
look equally fast. Absolute numbers depend on the machine; compare variants of
one run.

``--profile``: one more round per telemetry-on service under py-spy, whose
stacks are summarised (top functions, self and total) into ``experiments/results/profiles/``.
"""

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import registry
from stack.backends import Backends
from stack.native import REPO, NativeStack, Ports, native_stack, service_components
from stack.processes import wait_until

RESULTS = REPO / "experiments" / "results"  # bench.md, bench.json, profiles/
SERVICES = registry.names()
STORES = ("jaeger", "prometheus", "victoria-logs")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# No simulated thinking, and no rate limit: wrk is one client at full speed.
BENCH_ENV = {
    "CHAT_THINKING_BASE_MS": "0",
    "CHAT_THINKING_PER_CHAR_MS": "0",
    "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000000",
}


@dataclass(frozen=True)
class Variant:
    name: str
    env: Mapping[str, str]
    telemetry: bool  # exports spans (counted in the span accounting)
    about: str


def _server_instrumentation(value: str) -> dict[str, str]:
    return {f"{service.upper()}_SERVER_INSTRUMENTATION": value for service in SERVICES}


VARIANTS = (
    Variant("off", {"OTEL_SDK_DISABLED": "true"}, False, "telemetry off (OTEL_SDK_DISABLED)"),
    Variant("on", {}, True, "telemetry on, FastAPI's native server telemetry"),
    Variant(
        "on_contrib",
        _server_instrumentation("contrib"),
        True,
        "telemetry on, opentelemetry-instrumentation-fastapi",
    ),
    Variant(
        "off_httptools",
        {"OTEL_SDK_DISABLED": "true", "UVICORN_HTTP": "httptools"},
        False,
        "telemetry off, gateway on httptools instead of h11",
    ),
)

# POSTs /chat with a rotating message: mostly cache hits after the first round,
# as in a chat where people ask the same few things. done() prints the run's
# numbers as one JSON line (latencies in microseconds).
WRK_SCRIPT = """
local messages = {"hello", "what is a trace", "metrics?", "logs please", "bye"}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%s"
request = function()
  n = n + 1
  return wrk.format(nil, "/chat", nil, '{"message": "' .. messages[n %% #messages + 1] .. '"}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "errors": %%d, "p50": %%d, "p95": %%d, "p99": %%d,'
    .. ' "error_kinds": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d,'
    .. ' "timeout": %%d}}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class Round:
    """One wrk run against one variant, and the CPU every process spent meanwhile."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_seconds: dict[str, float]
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass
class Processes:
    """Pids to read CPU time from, by the name a report shows."""

    pids: dict[str, list[int]] = field(default_factory=dict)

    def cpu_seconds(self) -> dict[str, float]:
        return {name: sum(_cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _children_cpu_seconds() -> float:
    """CPU time of this process's finished children: each wrk run, once waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def wrk(url: str, script: Path, *, seconds: float, connections: int) -> dict[str, Any]:
    """One wrk run; its done() line (requests, errors, latency percentiles in us)."""
    result = subprocess.run(
        [  # noqa: S607 (wrk from PATH: make bench installs it)
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:g}s",
            # A response slower than wrk's default 2 s would be an error, not a latency.
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("{"))
    numbers: dict[str, Any] = json.loads(line)
    return numbers


def measure_round(
    url: str, script: Path, processes: Processes, *, seconds: float, connections: int
) -> Round:
    before, wrk_before = processes.cpu_seconds(), _children_cpu_seconds()
    numbers = wrk(url, script, seconds=seconds, connections=connections)
    after, wrk_after = processes.cpu_seconds(), _children_cpu_seconds()
    cpu = {name: after[name] - before[name] for name in after}
    cpu["load generator (wrk)"] = wrk_after - wrk_before
    return Round(
        requests=numbers["requests"],
        seconds=numbers["duration_us"] / 1e6,
        errors=numbers["errors"],
        p50_ms=numbers["p50"] / 1000,
        p95_ms=numbers["p95"] / 1000,
        p99_ms=numbers["p99"] / 1000,
        cpu_seconds=cpu,
        error_kinds=numbers["error_kinds"],
    )


def summarise(rounds: list[Round]) -> dict[str, Any]:
    """A variant's rounds as the report shows them: medians, and CPU per request."""
    requests = sum(r.requests for r in rounds)
    cpu: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in rounds:
        cpu.update(r.cpu_seconds)
        errors.update(r.error_kinds)
    per_request_ms = {name: round(seconds / requests * 1000, 3) for name, seconds in cpu.items()}
    return {
        "throughput_rps": round(statistics.median(r.rps for r in rounds), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in rounds), 2),
        "p95_ms": round(statistics.median(r.p95_ms for r in rounds), 2),
        "p99_ms": round(statistics.median(r.p99_ms for r in rounds), 2),
        "requests": requests,
        "failed_requests": sum(r.errors for r in rounds),
        "failures_by_kind": {kind: n for kind, n in errors.items() if n},
        "rounds_rps": [round(r.rps, 1) for r in rounds],
        # CPU milliseconds per request, by process; their sum is what one request costs.
        "cpu_ms_per_request": per_request_ms,
        "cpu_ms_per_request_total": round(sum(per_request_ms.values()), 3),
    }


def _wait_spans_settled(backends: Backends, variants: Iterable[Variant]) -> dict[str, Any]:
    """Spans ended in the services (per variant, from their SDKs' own metrics) and
    stored by Jaeger (its own exporter's count), once both stopped moving."""
    names = [v.name for v in variants if v.telemetry]

    def counts() -> dict[str, Any]:
        ended = {
            name: int(
                backends.scalar(
                    "sum(otel_sdk_processor_span_processed_total"
                    f'{{deployment_environment_name="bench-{name}"}})'
                )
            )
            for name in names
        }
        dropped = int(
            backends.scalar('sum(otel_sdk_processor_span_processed_total{error_type!=""})')
        )
        return {
            "ended": ended,
            "dropped_in_services": dropped,
            "accepted_by_collector": int(
                backends.collector_counter("otelcol_receiver_accepted_spans_total")
            ),
            # Spans Jaeger's pipeline handed to its storage, from its own metrics.
            "stored": int(
                backends.counter(backends.ports.jaeger_metrics, "otelcol_exporter_sent_spans")
            ),
        }

    last: dict[str, Any] = {}

    def settled() -> dict[str, Any] | None:
        nonlocal last
        previous, last = last, counts()
        return last if last == previous and sum(last["ended"].values()) else None

    try:
        # Metrics arrive every 5 s; Prometheus and the stores need a moment more.
        return wait_until(settled, timeout=120, what="span counts to settle", interval=6)
    except TimeoutError:
        return last


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _variant_pids(stack: NativeStack, prefix: str) -> dict[str, list[int]]:
    by_name = {process.name: process.pid for process in stack.running}
    pids = {service: [by_name[f"{service}{prefix}"]] for service in SERVICES}
    pids["otel-collector"] = [by_name["otel-collector"]]
    pids["redis"] = [by_name[redis] for redis in registry.REDISES]  # both: data and limits
    pids["stores (Jaeger, Prometheus, VictoriaLogs)"] = [by_name[s] for s in STORES]
    return pids


def run_bench(
    api_key: str,
    *,
    rounds: int,
    seconds: float,
    connections: int,
    variants: tuple[Variant, ...] = VARIANTS,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("make bench needs wrk: tools/require.sh wrk wrk")
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="otel-chat-bench-") as tmp:
        run_dir = Path(tmp)
        script = run_dir / "chat.lua"
        script.write_text(WRK_SCRIPT % api_key)
        ports = Ports.free()
        # The stores and the Collector, with the first variant's chain; then the others.
        first, *others = variants
        env = {**BENCH_ENV, **_variant_env(first, 0, ports)}
        with native_stack(run_dir, ports, service_env=env) as stack:
            gateways = {first.name: ports.entry}
            names = {first.name: ""}
            for db, variant in enumerate(others, start=1):
                variant_ports = ports.with_free_services()
                suffix = f"-{variant.name}"
                components = service_components(
                    variant_ports, {**BENCH_ENV, **_variant_env(variant, db, ports)}
                )
                stack.start_components([replace(c, name=f"{c.name}{suffix}") for c in components])
                gateways[variant.name] = variant_ports.entry
                names[variant.name] = suffix
            processes = {
                name: Processes(_variant_pids(stack, suffix)) for name, suffix in names.items()
            }
            for port in gateways.values():  # warm up: caches filled, connections open
                wrk(f"http://127.0.0.1:{port}", script, seconds=3, connections=connections)
            results: dict[str, list[Round]] = {v.name: [] for v in variants}
            order = [v.name for v in variants]
            for number in range(rounds):
                for name in order[number % len(order) :] + order[: number % len(order)]:
                    results[name].append(
                        measure_round(
                            f"http://127.0.0.1:{gateways[name]}",
                            script,
                            processes[name],
                            seconds=seconds,
                            connections=connections,
                        )
                    )
            spans = _wait_spans_settled(Backends(ports), variants)
            profiles: dict[str, str] = {}
            for profiled in ("off", "on") if profile_dir is not None else ():
                assert profile_dir is not None
                profiles |= profile_services(
                    stack,
                    profiled,
                    names[profiled],
                    gateways[profiled],
                    script,
                    profile_dir,
                    connections,
                )
    load_after = os.getloadavg()
    summaries = {name: summarise(rs) for name, rs in results.items()}
    failures = {
        name: s["failures_by_kind"] for name, s in summaries.items() if s["failed_requests"]
    }
    if failures:
        raise SystemExit(f"requests failed, the numbers would measure errors: {failures}")
    off, on = summaries["off"], summaries["on"]
    ended = sum(spans.get("ended", {}).values())
    return {
        "throughput_ratio": round(on["throughput_rps"] / off["throughput_rps"], 3),
        "p95_ratio": round(on["p95_ms"] / off["p95_ms"], 3),
        "spans_lost": ended - spans.get("stored", 0),
        "off": off,
        "on": on,
        "variants": {v.name: {"about": v.about, **summaries[v.name]} for v in variants},
        "spans": spans,
        "profiles": profiles,
        "settings": {
            "rounds": rounds,
            "seconds_per_round": seconds,
            "connections": connections,
            "wrk_threads": 2,
        },
        "machine": {
            **machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "date": started.isoformat(timespec="seconds"),
        "commit": _commit(),
    }


def _variant_env(variant: Variant, db: int, ports: Ports) -> dict[str, str]:
    """A variant's settings; its own database in each Redis, its own environment name
    (the label that tells its spans apart in the SDK metrics)."""
    return {
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name=bench-{variant.name}",
        **{
            service.setting(service.redis): registry.redis_url_as(
                service.name, f"redis://127.0.0.1:{ports.redises[service.redis]}/{db}"
            )
            for service in registry.SERVICES
            if service.redis is not None
        },
        **variant.env,
    }


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


def profile_services(
    stack: NativeStack,
    variant: str,
    suffix: str,
    gateway_port: int,
    script: Path,
    out: Path,
    connections: int,
    seconds: float = 15,
) -> dict[str, str]:
    """py-spy on each service of ``variant`` during one more wrk round; summaries to ``out``."""
    by_name = {process.name: process.pid for process in stack.running}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="otel-chat-profile-") as tmp:
        recorders = {
            service: subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),  # the project's dev group
                    "record",
                    "--nonblocking",
                    "--full-filenames",  # to tell the libraries apart
                    "--rate",
                    "250",
                    "--duration",
                    str(int(seconds)),
                    "--format",
                    "raw",
                    "--output",
                    f"{tmp}/{service}.txt",
                    "--pid",
                    str(by_name[f"{service}{suffix}"]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for service in SERVICES
        }
        time.sleep(1)  # py-spy attaches; the round below outlasts it
        url = f"http://127.0.0.1:{gateway_port}"
        wrk(url, script, seconds=seconds + 1, connections=connections)
        written = {}
        for service, recorder in recorders.items():
            recorder.wait(timeout=60)
            stacks = Path(f"{tmp}/{service}.txt").read_text()
            path = out / f"{service}-{variant}.md"
            path.write_text(profile_summary(f"{service}, variant {variant}", stacks))
            written[f"{service}-{variant}"] = str(path.relative_to(REPO))
    return written


def profile_summary(title: str, collapsed: str, top: int = 25) -> str:
    """py-spy's collapsed stacks as tables: CPU by library (self time), the
    functions that spend it (self), and the calls it is spent under (total;
    the server's own spine, under which nearly everything runs, left out)."""
    self_time: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [_frame(f) for f in stack.split(";")]
        self_time[frames[-1][0]] += n
        by_package[frames[-1][1]] += n
        for name in {name for name, _ in frames}:
            total_time[name] += n
    spine = {name for name, n in total_time.items() if n > 0.6 * samples}
    lines = [
        f"# {title}: where the CPU goes",
        "",
        f"py-spy ({samples} samples of busy threads, 250/s) during one wrk round of"
        " `make bench PROFILE=1`; each share is of all samples. Self time in"
        " `Runner.run (asyncio/runners.py)` is the event loop's own C code (uvloop:"
        " polling, socket reads and writes).",
        "",
        "## By library (self time)",
        "",
        "| share | library |",
        "|---:|---|",
        *(f"| {n / samples:.1%} | {package} |" for package, n in by_package.most_common(top)),
        "",
        "## Functions (self time)",
        "",
        "| share | function |",
        "|---:|---|",
        *(f"| {n / samples:.1%} | `{name}` |" for name, n in self_time.most_common(top)),
        "",
        "## Calls (total time, under the server's spine)",
        "",
        "| share | function |",
        "|---:|---|",
        *[
            f"| {n / samples:.1%} | `{name}` |"
            for name, n in total_time.most_common()
            if name not in spine
        ][:top],
        "",
    ]
    return "\n".join(lines)


def _frame(frame: str) -> tuple[str, str]:
    """``func (path/to/module.py:123)`` as (``func (module path)``, library)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(str(REPO) + "/"):
        path = path[len(str(REPO)) + 1 :]
    elif "/lib/python3" in path:  # the standard library
        path = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    parts = path.split("/")
    # opentelemetry.sdk.trace, opentelemetry.exporter.otlp, services.common, ...
    depth = {"opentelemetry": 3, "services": 2}.get(parts[0], 1)
    depth = min(depth, len(parts) - 1) or 1
    library = ".".join(parts[:depth]).removesuffix(".py")
    return f"{name} ({path})", library


def markdown(report: dict[str, Any]) -> str:
    """experiments/results/bench.md (docs/operate/benchmark.md includes it): one line per variant,
    then the ratios and the machine."""
    m = report["machine"]
    lines = [
        "| variant | req/s | p50 ms | p95 ms | p99 ms | CPU ms per request"
        " (gateway / chat / cache / Collector / Redis / stores / wrk) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    order = (
        "gateway",
        "chat",
        "cache",
        "otel-collector",
        "redis",
        "stores (Jaeger, Prometheus, VictoriaLogs)",
        "load generator (wrk)",
    )
    for name, v in report["variants"].items():
        cpu = v["cpu_ms_per_request"]
        parts = " / ".join(f"{cpu.get(p, 0):.2f}" for p in order)
        lines.append(
            f"| `{name}`: {v['about']} | {v['throughput_rps']:.0f} | {v['p50_ms']:.1f} |"
            f" {v['p95_ms']:.1f} | {v['p99_ms']:.1f} | {v['cpu_ms_per_request_total']:.2f}"
            f" ({parts}) |"
        )
    spans = report["spans"]
    settings = report["settings"]
    lines += [
        "",
        f"On/off: throughput **{report['throughput_ratio']:.2f}x**, p95"
        f" **{report['p95_ratio']:.2f}x**. Spans ended in the services:"
        f" {sum(spans.get('ended', {}).values())}, stored in the trace store:"
        f" {spans.get('stored', 0)}, lost: **{report['spans_lost']}**.",
        "",
        f"{m['cores']} cores ({m['cpu_model']}), Python {m['python']}; load average"
        f" {m['load_average_before'][0]} before the run; {settings['rounds']} rounds of"
        f" {settings['seconds_per_round']:g} s per variant, wrk with"
        f" {settings['connections']} connections; {report['date']}, commit"
        f" {report['commit']}.",
    ]
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any], out: Path = RESULTS) -> None:
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(report))


def wait_for_quiet(max_wait: float, threshold: float = 0.5) -> float:
    """Wait (up to ``max_wait`` s) for the 1-minute load average to drop under
    ``threshold``: numbers from a busy machine measure its other work too."""
    deadline = time.monotonic() + max_wait
    while (load := os.getloadavg()[0]) >= threshold and time.monotonic() < deadline:
        print(f"waiting for a quiet machine: load average {load:.2f}", flush=True)
        time.sleep(15)
    return load


def print_report(report: dict[str, Any]) -> None:
    print(markdown(report))
    quiet = report["machine"]["load_average_before"][0]
    if quiet >= 0.5:
        print(
            f"NOTE: the machine was busy when the run began (load average {quiet}):"
            " the numbers are noisy. Rerun on a quiet machine before committing them."
        )
