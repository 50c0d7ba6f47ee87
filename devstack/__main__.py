"""``python -m devstack up|down|ps|logs|trace|load|bench|fault|drills``: the native stack
behind ``make dev``, the trace and load commands for either stack, the benchmark,
faults on purpose and the fault drills."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from devstack import drills, faults
from devstack.bench import (
    RESULTS,
    VARIANTS,
    print_report,
    run_bench,
    wait_for_quiet,
    write_results,
)
from devstack.faults import SCENARIOS
from devstack.load import run_load
from devstack.native import REPO, NativeStack, Ports, replicas_from_environment
from devstack.trace import TraceError, find_stores, trace_view
from devstack.waterfall import as_json, print_view
from services.gateway.settings import DEMO_API_KEY

RUN_DIR = Path(os.environ.get("DEVSTACK_RUN_DIR", REPO / ".run"))


def up(detach: bool) -> int:
    if (existing := NativeStack.load(RUN_DIR)) and existing.running:
        print(f"already running ({RUN_DIR / 'state.json'}); `make down` first", file=sys.stderr)
        return 1
    try:
        # CHAT_REPLICAS=3 CACHE_REPLICAS=2 make dev: several processes of a service.
        ports = Ports().with_replicas(replicas_from_environment(os.environ))
    except ValueError as exc:
        print(f"make dev: {exc}", file=sys.stderr)
        return 2
    stack = NativeStack(RUN_DIR, ports, detachable=True)
    # Ctrl-C and `kill` both stop everything started so far, wherever start() is.
    # (Set explicitly: a shell starting us in the background may have ignored SIGINT.)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        stack.start()
    except (Exception, KeyboardInterrupt) as exc:
        _stop(stack)
        print(f"native stack failed to start: {exc!r}", file=sys.stderr)
        return 1
    print("native stack ready (logs in .run/logs/):")
    for name, (url, note) in stack.urls().items():
        print(f"  {name:<14} {url}" + (f"\n  {'':<14} {note}" if note else ""))
    print(
        "  No Grafana natively (AGPL): `make trace` sends a request and prints its trace.\n"
        '  try: curl -s localhost:8000/chat -H "X-API-Key: demo-key" '
        "-H 'Content-Type: application/json' -d '{\"message\": \"hello\"}'"
    )
    if detach:
        print("stop it with `make down`")
        return 0
    print("Ctrl-C stops everything")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...")
        _stop(stack)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(stack: NativeStack) -> None:
    # A second Ctrl-C (uv forwards the terminal's too) must not cut the stop short.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # The state file is the truth: `make fault-clear` may have restarted a component.
    recorded = NativeStack.load(stack.run_dir)
    (recorded if recorded is not None else stack).stop()


def down() -> int:
    stack = NativeStack.load(RUN_DIR)
    if stack is None:
        print("no native stack is running")
        return 0
    names = ", ".join(r.name for r in stack.running) or "nothing left"
    print(f"stopping {names}")
    stack.stop()
    return 0


def ps() -> int:
    stack = NativeStack.load(RUN_DIR)
    if stack is None or not stack.running:
        print("no native stack is running")
        return 0
    for process in stack.running:
        print(f"{process.name:<14} pid {process.pid:<8} log {process.log}")
    return 0


def logs() -> int:
    files = sorted(str(p) for p in (RUN_DIR / "logs").glob("*.log"))
    if not files:
        print("no logs yet")
        return 0
    return subprocess.call(["tail", "-n", "20", "-F", *files])  # noqa: S607 (tail from PATH)


def fault(name: str | None, *, clear: bool) -> int:
    stack = NativeStack.load(RUN_DIR)
    native = stack is not None and bool(stack.running)
    target: faults.Target = (
        faults.NativeTarget(stack) if stack and native else faults.DockerTarget()
    )
    where = "the native stack" if native else "the Docker stack"
    if clear:
        faults.clear(target)
        print(f"no faults left in {where}")
        return 0
    if name is None:
        print("\n\n".join(faults.describe(s) for s in faults.SCENARIOS.values()))
        return 0
    scenario = faults.SCENARIOS[name]
    faults.apply(target, scenario)
    print(f"in {where}: {faults.describe(scenario)}")
    return 0


def trace(args: argparse.Namespace, api_key: str) -> int:
    """``make trace``: print the trace (or its JSON); a clear message and a non-zero
    exit when it cannot."""
    try:
        view = trace_view(
            find_stores(RUN_DIR),
            trace_id=args.trace_id,
            message=args.message,
            session=args.session,
            api_key=api_key,
            timeout=args.timeout,
        )
    except TraceError as exc:
        print(f"make trace: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(as_json(view), indent=2))
    else:
        print_view(view)
    return 0


def load() -> int:
    """Locust against the native stack if one runs here, else the Docker stack."""
    stack = NativeStack.load(RUN_DIR)
    if stack is not None and stack.running:
        run_load(stack.ports)
    docker = shutil.which("docker")
    docker_answers = (
        docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0
    )
    if docker_answers:
        run_load(None)
    print("make load: no stack is running here (make up, or make dev)", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the native stack (foreground: Ctrl-C stops)")
    start.add_argument("--detach", action="store_true", help="return once it is ready")
    commands.add_parser("down", help="stop the detached native stack")
    commands.add_parser("ps", help="list its processes")
    commands.add_parser("logs", help="follow its logs")
    trace_cmd = commands.add_parser("trace", help="send a chat request and print its trace")
    trace_cmd.add_argument("--id", dest="trace_id", help="show this trace instead (any form)")
    trace_cmd.add_argument("--message", help="the chat message to send")
    trace_cmd.add_argument("--session", help="continue this session")
    trace_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    trace_cmd.add_argument(
        "--timeout", type=float, default=30, help="seconds to wait for the whole trace"
    )
    break_it = commands.add_parser("fault", help="break the running stack on purpose")
    break_it.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    break_it.add_argument("--clear", action="store_true", help="undo every fault")
    bench = commands.add_parser("bench", help="telemetry on vs off, in one run (wrk)")
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--seconds", type=float, default=15)
    bench.add_argument("--connections", type=int, default=32)
    bench.add_argument("--profile", action="store_true", help="py-spy summaries too")
    bench.add_argument(
        "--variants", default=",".join(v.name for v in VARIANTS), help="which, comma-separated"
    )
    bench.add_argument(
        "--wait-quiet", type=float, default=600, help="seconds to wait for load average < 0.5"
    )
    commands.add_parser("load", help="load-test the running stack with Locust (LOCUST_* vars)")
    drill = commands.add_parser("drills", help="fault drills on a native stack of their own")
    drill.add_argument("--fast", action="store_true", help="short phases, small SDK queues")
    drill.add_argument("--out", type=Path, default=REPO / "drills", help="report directory")
    args = parser.parse_args()
    if args.command == "drills":
        return drills.main(fast=args.fast, out_dir=args.out)
    if args.command == "up":
        return up(args.detach)
    if args.command == "fault":
        return fault(args.scenario, clear=args.clear)
    if args.command == "bench":
        wait_for_quiet(args.wait_quiet)
        report = run_bench(
            DEMO_API_KEY,
            rounds=args.rounds,
            seconds=args.seconds,
            connections=args.connections,
            profile_dir=RESULTS / "profiles" if args.profile else None,
            variants=tuple(v for v in VARIANTS if v.name in args.variants.split(",")),
        )
        write_results(report)
        print_report(report)
        return 0
    if args.command == "load":
        return load()
    api_key = os.environ.get("API_KEY", DEMO_API_KEY)
    if args.command == "trace":
        return trace(args, api_key)
    return {"down": down, "ps": ps, "logs": logs}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
