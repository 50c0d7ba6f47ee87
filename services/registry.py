"""The demo's services, listed once: everything that needs the list reads it here.

The Makefile (``SERVICES``, ``run-<service>`` and its port), devstack (the native
stack, ``make trace``) and the tests read this module; files that cannot import
Python (docker-compose.yml, the Prometheus alert rules) stay explicit, and
``make check`` (scripts/check_services.py) fails when they disagree with it.
README "Adding a service" says what a new service takes.

Each service depends on exactly one thing (``services.common.app.Dependency``,
what its ``/readyz`` checks): the next service, or Redis. The list runs from the
entry point (the one clients call) down to the service that stores in Redis, so
those form the chain gateway -> chat -> cache -> redis. A service may call more
on the side, without depending on it (``uses``: the gateway's rate limits live in
Redis, and it serves on when Redis is gone).

Standard library only: ``make`` runs it with the system Python
(``python3 -m services.registry names``), before any virtualenv exists.
"""

import sys
from collections.abc import Mapping
from dataclasses import dataclass

REDIS = "redis"  # the one dependency that is not one of our services


@dataclass(frozen=True)
class Service:
    name: str
    # Its port, in both stacks (the native one binds 127.0.0.1, compose the container).
    port: int
    # Its admin endpoints' port (services/common/admin.py): on 127.0.0.1 only, in
    # both stacks, never published or routed (``<NAME>_ADMIN_PORT`` overrides it).
    admin_port: int
    # What it depends on: the next service, or REDIS.
    calls: str
    # What else it calls, without needing it to serve (REDIS or a service).
    uses: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """Its entry module, with ``create_app(settings=None, wiring=PRODUCTION)``."""
        return f"services.{self.name}.main"

    @property
    def app(self) -> str:
        """The uvicorn app factory: ``uvicorn <app> --factory``."""
        return f"{self.module}:create_app"

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Everything it calls: what it depends on first."""
        return (self.calls, *self.uses)

    def setting(self, dependency: str) -> str:
        """The environment variable that says where ``dependency`` is
        (``<NAME>_<DEPENDENCY>_URL``: its settings have a ``<dependency>_url`` field)."""
        return f"{self.name.upper()}_{dependency.upper()}_URL"


SERVICES = (
    Service("gateway", 8000, 8100, calls="chat", uses=(REDIS,)),  # rate limits in Redis
    Service("chat", 8001, 8101, calls="cache"),
    Service("cache", 8002, 8102, calls=REDIS),
)
ENTRY = SERVICES[0]  # the public API: the only service clients call


def names() -> tuple[str, ...]:
    return tuple(service.name for service in SERVICES)


def by_name(name: str) -> Service:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r} in services/registry.py (have: {', '.join(names())})")


def edges() -> tuple[tuple[str, str], ...]:
    """Caller -> callee, every call: the chain from the entry point down to Redis,
    then the calls on the side."""
    chain = [(service.name, service.calls) for service in SERVICES]
    side = [(service.name, used) for service in SERVICES for used in service.uses]
    return (*chain, *side)


def start_order() -> tuple[Service, ...]:
    """Callees before their callers, so each one's readiness check can pass."""
    return tuple(reversed(SERVICES))


def dependency_environment(urls: Mapping[str, str]) -> dict[str, str]:
    """Every service's ``<NAME>_<DEPENDENCY>_URL``, given the URL of each dependency
    by name (every service's and ``redis``)."""
    return {s.setting(dep): urls[dep] for s in SERVICES for dep in s.dependencies}


def problems() -> list[str]:
    """What is wrong with the list itself (empty when it is consistent)."""
    found = []
    if len(set(names())) != len(SERVICES):
        found.append(f"a name is used twice: {names()}")
    ports = [port for service in SERVICES for port in (service.port, service.admin_port)]
    if len(set(ports)) != len(ports):
        found.append(f"a port is used twice: {ports}")
    # A chain: each service calls the next one, the last calls Redis.
    expected = [*names()[1:], REDIS]
    for service, callee in zip(SERVICES, expected, strict=True):
        if service.calls != callee:
            found.append(f"{service.name} calls {service.calls}, the chain needs {callee}")
        for used in set(service.uses) - {*names(), REDIS}:
            found.append(f"{service.name} uses {used}, which is neither a service nor Redis")
    return found


def main(argv: list[str]) -> int:
    """``names`` (space-separated, for make) or ``port <service>``."""
    match argv:
        case ["names"]:
            print(" ".join(names()))
        case ["port", name]:
            print(by_name(name).port)
        case _:
            print("usage: python3 -m services.registry names | port <service>", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        sys.exit(2)
