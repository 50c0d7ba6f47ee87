"""The demo's services, listed once: everything that needs the list reads it here.

The Makefile (``SERVICES``, ``run-<service>`` and its port), the native stack
(stack/), ``make trace`` and the tests read this module; files that cannot import
Python (docker-compose.yml, the Prometheus alert rules) stay explicit, and
``make check`` (checks/services.py) fails when they disagree with it.
docs/contribute/adding-a-service.md says what a new service takes.

Each service depends on exactly one thing (``services.common.app.Dependency``,
what its ``/readyz`` checks): the next service, or Redis. The list runs from the
entry point (the one clients call) down to the service that stores in Redis, so
those form the chain gateway -> chat -> cache -> redis. A service may call more
on the side, without depending on it (``uses``: the gateway's rate limits live in
a Redis of their own, redis-limits, and it serves on when that is gone).

There are two Redis servers, not one, because eviction is a setting of a whole
server: the limits must never compete with chat data for memory (deploy/redis/).
Each is named here as compose, Kubernetes and the native stack name it; a service
talks to one Redis at most, and reads where it is from ``<NAME>_REDIS_URL``
whichever of the two it is, as the ACL user named after the service.

Standard library only: ``make`` runs it with the system Python
(``python3 -m services.registry names``), before any virtualenv exists.
"""

import sys
from collections.abc import Mapping
from dataclasses import dataclass

REDIS = "redis"  # the data: chat histories and cached replies (the cache's store)
REDIS_LIMITS = "redis-limits"  # the gateway's rate limits, and nothing else
REDISES = (REDIS, REDIS_LIMITS)  # the dependencies that are not our services


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
    # What else it calls, without needing it to serve (a Redis or a service).
    uses: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """Its entry module, with ``create_app(settings=None, outbound=None)``."""
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
        (``<NAME>_<DEPENDENCY>_URL``, ``<NAME>_REDIS_URL`` for either Redis: its
        settings have a ``<dependency>_url`` or ``redis_url`` field)."""
        return f"{self.name.upper()}_{_setting_name(dependency).upper()}_URL"

    @property
    def redis(self) -> str | None:
        """The Redis it calls, if any (one at most: see problems())."""
        return next((d for d in self.dependencies if d in REDISES), None)


def _setting_name(dependency: str) -> str:
    return "redis" if dependency in REDISES else dependency


SERVICES = (
    Service("gateway", 8000, 8100, calls="chat", uses=(REDIS_LIMITS,)),  # rate limits
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
    then the calls on the side (a Redis by its name here: the service graph, which
    knows only the client spans' ``db.system.name``, calls both "redis")."""
    chain = [(service.name, service.calls) for service in SERVICES]
    side = [(service.name, used) for service in SERVICES for used in service.uses]
    return (*chain, *side)


def start_order() -> tuple[Service, ...]:
    """Callees before their callers, so each one's readiness check can pass."""
    return tuple(reversed(SERVICES))


def dependency_environment(urls: Mapping[str, str]) -> dict[str, str]:
    """Every service's ``<NAME>_<DEPENDENCY>_URL``, given the URL of each dependency
    by name (every service's and each Redis's). A service reaches Redis as the ACL user
    of its own name: ``redis://127.0.0.1:6380/0`` becomes ``redis://cache@127.0.0.1:6380/0``
    for the cache (its password: ``<NAME>_REDIS_PASSWORD_FILE``, set by each stack)."""
    return {
        s.setting(dep): redis_url_as(s.name, urls[dep]) if dep in REDISES else urls[dep]
        for s in SERVICES
        for dep in s.dependencies
    }


def redis_url_as(user: str, url: str) -> str:
    """``url`` (``redis://host:port/db``) with ``user`` as its user name."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" in rest:
        raise ValueError(f"{url!r}: expected redis://host:port/db, without a user")
    return f"{scheme}://{user}@{rest}"


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
        for used in set(service.uses) - {*names(), *REDISES}:
            found.append(f"{service.name} uses {used}, which is neither a service nor Redis")
        redises = [d for d in service.dependencies if d in REDISES]
        if len(redises) > 1:  # one <NAME>_REDIS_URL, one ACL user
            found.append(f"{service.name} calls {redises}: one Redis per service at most")
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
