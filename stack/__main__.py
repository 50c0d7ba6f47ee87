"""``python -m stack up|down|ps|logs|fault``: the native stack behind ``make dev`` (and
``make up`` without a Docker engine), and faults on purpose in either stack."""

import argparse
import os
import signal
import subprocess
import sys

from stack import faults
from stack.faults import SCENARIOS
from stack.native import RUN_DIR, NativeStack, Ports, replicas_from_environment


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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the native stack (foreground: Ctrl-C stops)")
    start.add_argument("--detach", action="store_true", help="return once it is ready")
    commands.add_parser("down", help="stop the detached native stack")
    commands.add_parser("ps", help="list its processes")
    commands.add_parser("logs", help="follow its logs")
    break_it = commands.add_parser("fault", help="break the running stack on purpose")
    break_it.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    break_it.add_argument("--clear", action="store_true", help="undo every fault")
    args = parser.parse_args()
    if args.command == "up":
        return up(args.detach)
    if args.command == "fault":
        return fault(args.scenario, clear=args.clear)
    return {"down": down, "ps": ps, "logs": logs}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
