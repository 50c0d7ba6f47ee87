"""`make up` on Docker (stack/stack.sh): the engine and Compose versions are checked
before anything is built, and a failed `up` says how to look and clean up.

No Docker engine runs here, so a stand-in `docker` on PATH answers the version
questions the way real engines do and records every other call.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack.native import REPO

FAKE_DOCKER = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_DOCKER_LOG"
case "$*" in
  "version --format"*) [ -n "$FAKE_ENGINE" ] && echo "$FAKE_ENGINE" || exit 1 ;;
  "compose version --short") [ -n "$FAKE_COMPOSE" ] && echo "$FAKE_COMPOSE" || exit 1 ;;
  "compose up"*) exit "$FAKE_UP_RC" ;;
esac
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    docker_calls: list[str]


def make_up(tmp_path: Path, *, engine: str, compose: str, up_rc: int = 0, **extra_env: str) -> Run:
    """`stack/stack.sh up` forced onto Docker, against the stand-in engine."""
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        **os.environ,
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "STACK": "docker",
        "FAKE_DOCKER_LOG": str(log),
        "FAKE_ENGINE": engine,
        "FAKE_COMPOSE": compose,
        "FAKE_UP_RC": str(up_rc),
        **extra_env,
    }
    env.pop("COMPOSE", None)
    done = subprocess.run(
        [str(REPO / "stack/stack.sh"), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, log.read_text().splitlines())


def built_or_started(run: Run) -> bool:
    return any(
        call.startswith(("compose up", "compose build", "build")) for call in run.docker_calls
    )


@pytest.mark.parametrize(
    ("engine", "compose", "says"),
    [
        # Debian 12's docker.io: the engine that built every image, then refused the file.
        ("20.10.24+dfsg1 1.41", "2.26.1", "needs Docker Engine 25.0 or newer (API 1.44)"),
        ("24.0.9 1.43", "2.29.7", "this one is 24.0.9 (API 1.43)"),
        ("27.3.1 1.47", "2.20.2", "needs Docker Compose 2.24.1 or newer"),
        ("27.3.1 1.47", "v2.24.0", "says v2.24.0"),
        ("27.3.1 1.47", "", "says none"),
        ("", "2.40.3", "no Docker engine answers"),
    ],
)
def test_too_old_or_missing_stops_before_building(
    tmp_path: Path, engine: str, compose: str, says: str
) -> None:
    run = make_up(tmp_path, engine=engine, compose=compose)
    assert run.returncode != 0
    assert says in run.stderr
    assert not built_or_started(run), run.docker_calls


@pytest.mark.parametrize(
    ("engine", "compose"), [("25.0.0 1.44", "2.24.1"), ("29.1.2 1.52", "v2.40.3")]
)
def test_new_enough_runs_the_one_up_command(tmp_path: Path, engine: str, compose: str) -> None:
    run = make_up(tmp_path, engine=engine, compose=compose)
    assert run.returncode == 0, run.stderr
    assert "compose up -d --build --wait" in run.docker_calls
    assert "Stack ready" in run.stdout


def test_a_failed_up_says_how_to_look_and_clean_up(tmp_path: Path) -> None:
    run = make_up(tmp_path, engine="27.3.1 1.47", compose="2.40.3", up_rc=1)
    assert run.returncode != 0
    assert "make logs" in run.stderr and "make down VOLUMES=1" in run.stderr
    assert "Stack ready" not in run.stdout


def test_replica_counts_scale_the_services_but_never_the_entry_point(tmp_path: Path) -> None:
    run = make_up(
        tmp_path,
        engine="27.3.1 1.47",
        compose="2.40.3",
        CHAT_REPLICAS="3",
        CACHE_REPLICAS="2",
        GATEWAY_REPLICAS="2",  # it publishes port 8000: one container holds it
    )
    assert run.returncode == 0, run.stderr
    assert "compose up -d --build --wait --scale chat=3 --scale cache=2" in run.docker_calls
