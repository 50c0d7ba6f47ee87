"""`make fault` against the Docker stack, without Docker: a stand-in `docker` on
PATH runs what `docker compose exec` would run inside a container (the same
Python one-liner, with the container's PORT and admin key) against a real service,
and records what `stop`/`start` would do."""

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.faults import SCENARIOS, DockerTarget, apply, clear
from devstack.native import DEMO_ADMIN_KEY
from devstack.processes import free_port
from tests.integration.conftest import service_process

STAND_IN = """#!/bin/sh
# docker compose exec -T SERVICE python -c CODE  |  docker compose stop|start NAME
shift  # compose
case "$1" in
  exec) shift 2; service=$1; shift 2
        echo "exec $service" >> "$DOCKER_CALLS"
        PORT=$SERVICE_PORT exec "$PYTHON" -c "$2" ;;
  *)    echo "$1 $2" >> "$DOCKER_CALLS" ;;
esac
"""


@pytest.fixture
def docker_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(STAND_IN)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls"
    monkeypatch.setenv("PATH", f"{docker.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CALLS", str(calls))
    monkeypatch.setenv("PYTHON", sys.executable)
    yield calls


def test_docker_faults_reach_the_service_and_stop_the_collector(
    docker_stand_in: Path, redis_url: str, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    env = {"CACHE_REDIS_URL": redis_url, "CACHE_ADMIN_KEY": DEMO_ADMIN_KEY}
    with service_process("cache", port, log_dir, env):
        # Every "container" is this one cache process, each with its own key variable.
        monkeypatch.setenv("SERVICE_PORT", str(port))
        for service in ("GATEWAY", "CHAT", "CACHE"):
            monkeypatch.setenv(f"{service}_ADMIN_KEY", DEMO_ADMIN_KEY)

        def plan() -> object:
            url = f"http://127.0.0.1:{port}/admin/faults"
            return httpx.get(url, headers={"X-Admin-Key": DEMO_ADMIN_KEY}).json()

        apply(DockerTarget(), SCENARIOS["slow-redis"])
        assert plan() == {"redis": {"latency_ms": 700, "error_rate": 0.0, "status": 500}}
        apply(DockerTarget(), SCENARIOS["collector-down"])
        clear(DockerTarget())
        assert plan() == {}
    calls = docker_stand_in.read_text().splitlines()
    assert "exec cache" in calls
    # (fault-clear starts the Collector whatever; `start` of a running one is a no-op)
    stopped = calls.index("stop otel-collector")
    assert "start otel-collector" in calls[stopped:]
