"""``make bench``: what telemetry costs, as a ratio measured in one run.

Two copies of the chain gateway -> chat -> cache run side by side against one
Redis: one with full telemetry exported through the real Collector into the
stores, one with the OpenTelemetry SDK disabled (``OTEL_SDK_DISABLED=true``:
the same code and wrappers, no spans, metrics or logs recorded). wrk loads
each gateway in turn, alternating, for several rounds; the median throughput of
each side and their ratio are printed. Absolute numbers depend on the machine;
the ratio is the point.

The chat service's simulated thinking and the gateway's rate limit are switched
off here: with them, the chain would mostly sleep (or answer 429) and both sides
would look equally fast. A run with any failed request is rejected.
"""

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from devstack.backends import Backends
from devstack.native import Ports, native_stack, service_components

# No simulated thinking, and no rate limit: wrk is one client at full speed.
BENCH_ENV = {
    "CHAT_THINKING_BASE_MS": "0",
    "CHAT_THINKING_PER_CHAR_MS": "0",
    "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000000",
}

# POSTs /chat with a rotating message: mostly cache hits after the first round,
# as in a chat where people ask the same few things.
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
"""


def _wrk(url: str, script: Path, *, seconds: int, connections: int) -> tuple[float, int]:
    """Requests per second, and non-2xx responses plus socket errors."""
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    assert rate, result.stdout
    errors = r"(?:Non-2xx or 3xx responses:|connect|read|write|timeout)\s+(\d+)"
    bad = sum(int(n) for n in re.findall(errors, result.stdout))
    return float(rate.group(1)), bad


def _settled_span_counts(backends: Backends, timeout: float = 60) -> dict[str, float]:
    """Span counts once every stage agrees, or the last reading after ``timeout``
    (a difference then is real loss, and the report shows where)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = backends.span_counts()
        if len(set(counts.values())) == 1 or time.monotonic() > deadline:
            return counts
        time.sleep(1)


def run_bench(api_key: str, *, rounds: int, seconds: int, connections: int) -> dict[str, object]:
    if shutil.which("wrk") is None:
        raise SystemExit("make bench needs wrk (Debian/Ubuntu: apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="otel-chat-bench-") as tmp:
        run_dir = Path(tmp)
        script = run_dir / "chat.lua"
        script.write_text(WRK_SCRIPT % api_key)
        ports = Ports.free()
        with native_stack(run_dir, ports, service_env=BENCH_ENV) as stack:
            off_ports = replace(ports, services=Ports.free_services())
            untraced = {**BENCH_ENV, "OTEL_SDK_DISABLED": "true"}
            untraced["CACHE_REDIS_URL"] = f"redis://127.0.0.1:{ports.redis}/1"
            stack.start_components(
                [replace(c, name=f"{c.name}-off") for c in service_components(off_ports, untraced)]
            )
            gateways = {"off": off_ports.entry, "on": ports.entry}
            for port in gateways.values():  # warm up: caches filled, connections open
                _wrk(f"http://127.0.0.1:{port}", script, seconds=3, connections=connections)
            samples: dict[str, list[float]] = {side: [] for side in gateways}
            failures = 0
            for _ in range(rounds):
                for side, port in gateways.items():
                    rate, bad = _wrk(
                        f"http://127.0.0.1:{port}", script, seconds=seconds, connections=connections
                    )
                    samples[side].append(rate)
                    failures += bad
            spans = _settled_span_counts(Backends(ports))
    if failures:
        raise SystemExit(f"{failures} requests failed: the numbers would measure errors")
    off, on = (statistics.median(samples[side]) for side in ("off", "on"))
    return {
        "telemetry_off_rps": round(off, 1),
        "telemetry_on_rps": round(on, 1),
        "on_off_ratio": round(on / off, 3),
        "rounds": {side: [round(r, 1) for r in rates] for side, rates in samples.items()},
        "failed_requests": failures,
        # The telemetry-on side's spans at each stage, once they stopped changing.
        "spans": spans,
        "connections": connections,
        "seconds_per_round": seconds,
    }


def print_report(report: dict[str, object]) -> None:
    print(json.dumps(report, indent=2))
    print(
        f"telemetry on/off throughput: {report['on_off_ratio']} "
        f"({report['telemetry_on_rps']} vs {report['telemetry_off_rps']} req/s, median)"
    )
    spans = report["spans"]
    assert isinstance(spans, dict)
    lost = max(spans.values()) - min(spans.values())
    print(f"spans: {int(max(spans.values()))} exported, {int(lost)} lost on the way")
