"""`make fault` against the Docker stack, without Docker: a stand-in `docker` on
PATH runs what `docker exec` would run inside each container of a service (the
same Python one-liner, with the container's admin key and admin port) against the
admin listeners of real services, two cache processes standing in for
`--scale cache=2`, and records what `stop`/`start` would do."""

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from stack.faults import SCENARIOS, DockerTarget, apply, clear
from stack.native import DEMO_ADMIN_KEY
from stack.processes import free_ports
from tests.integration.conftest import service_process

STAND_IN = """#!/bin/sh
# docker compose ps --quiet SERVICE  |  docker exec CONTAINER python -c CODE
# docker compose stop|start NAME
# A container's id here is the admin port of the real process that stands in for
# it, which its environment names as the service's admin port.
case "$1" in
  exec) echo "exec $2" >> "$DOCKER_CALLS"
        GATEWAY_ADMIN_PORT=$2 CHAT_ADMIN_PORT=$2 CACHE_ADMIN_PORT=$2 exec "$PYTHON" -c "$5" ;;
  compose)
    case "$2" in
      ps) echo "ps $4" >> "$DOCKER_CALLS"
          for port in $CONTAINER_PORTS; do echo "$port"; done ;;
      *)  echo "$2 $3" >> "$DOCKER_CALLS" ;;
    esac ;;
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


def test_docker_faults_reach_every_replica_and_stop_the_collector(
    docker_stand_in: Path, redis_url: str, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = free_ports(4)
    env = {"CACHE_REDIS_URL": redis_url, "CACHE_ADMIN_KEY": DEMO_ADMIN_KEY}
    with ExitStack() as replicas:
        for port, admin_port in zip(ports[:2], ports[2:], strict=True):
            replicas.enter_context(
                service_process("cache", port, log_dir, env, admin_port=admin_port)
            )
        # Every service's "containers" are these two cache processes, each
        # container with its own key variable.
        monkeypatch.setenv("CONTAINER_PORTS", " ".join(map(str, ports[2:])))
        for service in ("GATEWAY", "CHAT", "CACHE"):
            monkeypatch.setenv(f"{service}_ADMIN_KEY", DEMO_ADMIN_KEY)

        def plans() -> list[object]:
            urls = [f"http://127.0.0.1:{port}/admin/faults" for port in ports[2:]]
            return [httpx.get(u, headers={"X-Admin-Key": DEMO_ADMIN_KEY}).json() for u in urls]

        apply(DockerTarget(), SCENARIOS["slow-redis"])
        slow = {"redis": {"latency_ms": 700, "error_rate": 0.0, "status": 500}}
        assert plans() == [slow, slow]
        apply(DockerTarget(), SCENARIOS["collector-down"])
        clear(DockerTarget())
        assert plans() == [{}, {}]
    calls = docker_stand_in.read_text().splitlines()
    assert "ps cache" in calls
    assert {f"exec {port}" for port in ports[2:]} <= set(calls)
    # (fault-clear starts the Collector whatever; `start` of a running one is a no-op)
    stopped = calls.index("stop otel-collector")
    assert "start otel-collector" in calls[stopped:]
