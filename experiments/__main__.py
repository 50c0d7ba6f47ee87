"""``python -m experiments bench|drills|load``: the benchmark (``make bench``), the fault
drills (``make drills``), both on native stacks of their own, and a Locust load test
against whichever stack runs here (``make load``). Results go to experiments/results/."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from experiments import drills
from experiments.bench import (
    RESULTS,
    VARIANTS,
    print_report,
    run_bench,
    wait_for_quiet,
    write_results,
)
from experiments.load import run_load
from services.gateway.settings import DEMO_API_KEY
from stack.native import RUN_DIR, NativeStack


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
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
    drill = commands.add_parser("drills", help="fault drills on a native stack of their own")
    drill.add_argument("--fast", action="store_true", help="short phases, small SDK queues")
    drill.add_argument("--out", type=Path, default=RESULTS, help="report directory")
    commands.add_parser("load", help="load-test the running stack with Locust (LOCUST_* vars)")
    args = parser.parse_args()
    if args.command == "drills":
        return drills.main(fast=args.fast, out_dir=args.out)
    if args.command == "load":
        return load()
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


if __name__ == "__main__":
    sys.exit(main())
