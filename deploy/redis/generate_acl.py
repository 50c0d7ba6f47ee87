#!/usr/bin/env python3
"""Who may do what in each Redis: the ACL files, written from the rules below.

    python3 deploy/redis/generate_acl.py            # (re)write the demo's ACL files
    python3 deploy/redis/generate_acl.py --check    # exit 1 if a committed one is stale
    python3 deploy/redis/generate_acl.py --passwords DIR --out DIR   # yours (production)

Redis reads its users from the file given with ``--aclfile`` (ACL files take no
comments, hence the rules and their reasons live here). Each Redis has:

- ``default``: every command and key, behind a password: for people
  (``redis-cli --askpass``) and the fault drills, never for a service. A connection
  without credentials is this user unauthenticated, so it can do nothing at all.
  Why ``default`` holds the rights rather than a user named ``admin``: Redis replays a
  transaction from its append-only file as ``default``, and releases before
  redis/redis#14545 (Debian's 7.0 among them) check EXEC against that user's rights,
  so a restricted ``default`` made Redis drop every replayed transaction, and with
  them every Lua script's writes, silently, at each restart;
- ``probe``: PING and nothing else, with no password of its own (any will do), for
  the health checks of compose and Kubernetes (``redis-cli --user probe --pass any ping``);
- one user per service that uses it, named after the service and allowed only its own
  key prefixes and the commands it sends (services/registry.py says which Redis each
  service uses; a service not listed here has no user anywhere).

Passwords are never written: each user's line holds the SHA-256 of its password
(``#<hash>``), read from ``<DIR>/<user>.password`` (one line; a trailing newline is not
part of it, as for the services, which read the same files). The demo's passwords and
ACL files are in deploy/redis/demo-secrets/, for laptops only: make your own with
``--passwords`` (long random passwords: a hash of a short one can be guessed).

Standard library and services/registry.py only.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services import registry  # noqa: E402 - after the repository is on sys.path

DEMO_SECRETS = REPO / "deploy" / "redis" / "demo-secrets"

# A service's user: no channels, its keys, and only its commands. Each line starts from
# nothing (resetkeys, resetchannels, -@all), allows, and ends by taking back every @admin
# and @dangerous command (CONFIG, KEYS, FLUSHDB, DEBUG, CLIENT KILL, ...): no service can
# change the memory policy, empty a store, or see other clients.
SERVICE_RULES = {
    # services/cache/store.py: values (value:<key>, with a TTL) and the hit/miss counters
    # (hash stats), read and written as data and in MULTI/EXEC transactions; lists (the
    # chat histories: list:<key>, its ids list-ids:<key> and its group list-group:<group>)
    # only through services/cache/lists.py's Lua scripts, loaded with SCRIPT LOAD and run
    # with EVALSHA (the commands they call are in @read and @write, but TIME, which
    # stamps a list's last use in its group); @connection for
    # PING, AUTH, HELLO, SELECT and the CLIENT SETINFO that redis-py sends on connecting.
    "cache": "~value:* ~list:* ~list-ids:* ~list-group:* ~stats "
    "+@read +@write +@transaction +@connection +script|load +evalsha +time",
    # services/gateway/rate_limit.py (its KEY_PREFIX), through the limits library: its
    # Lua scripts, loaded with SCRIPT LOAD and run with EVALSHA (a script runs with its
    # caller's rights, so every command the scripts call is listed too), and nothing else.
    "gateway": "~gateway:ratelimit:* +@connection +script|load +evalsha "
    "+get +set +exists +incrby +pttl +rename",
}
_TAKEN_BACK = "-@admin -@dangerous"
ADMIN = "default"  # see the module's docstring
ADMIN_RULES = "~* &* +@all"
PROBE = "user probe on nopass resetkeys resetchannels -@all +ping"


def password_hash(path: Path) -> str:
    """The SHA-256 of the password in ``path``, as Redis compares it."""
    password = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not password or "\n" in password:
        raise ValueError(f"{path}: one line, one password")
    return hashlib.sha256(password.encode()).hexdigest()


def acl(redis: str, passwords: Path) -> str:
    """The ACL file of the Redis named ``redis`` (one of registry.REDISES)."""
    users = [s.name for s in registry.SERVICES if redis in s.dependencies]
    admin = password_hash(passwords / "admin.password")
    lines = [f"user {ADMIN} on #{admin} {ADMIN_RULES}", PROBE]
    for user in users:
        rules = SERVICE_RULES[user]  # KeyError: a service uses Redis with no rules here
        digest = password_hash(passwords / f"{user}.password")
        reset = "resetkeys resetchannels -@all"
        lines.append(f"user {user} on #{digest} {reset} {rules} {_TAKEN_BACK}")
    return "\n".join(lines) + "\n"


def acl_files(passwords: Path) -> dict[str, str]:
    """File name -> content, one per Redis (``redis.acl``, ``redis-limits.acl``)."""
    return {f"{redis}.acl": acl(redis, passwords) for redis in registry.REDISES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--passwords", type=Path, default=DEMO_SECRETS)
    parser.add_argument("--out", type=Path, default=DEMO_SECRETS)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, text in acl_files(args.passwords).items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"FAIL stale: {', '.join(stale)} (run deploy/redis/generate_acl.py)", file=sys.stderr)
        return 1
    if args.check:
        print("gen_redis_acl: OK (the demo ACL files are what the rules and passwords make)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
