"""The stack's two Redis servers: how each one is started, and who reaches it as whom.

=============  ===============================  =========================================
registry name  configuration (deploy/redis/)    holds                 ACL user of a service
=============  ===============================  =========================================
redis          redis.conf                       chat histories and    cache
                                                cached replies
redis-limits   redis-limits.conf                the gateway's rate    gateway
                                                limits
=============  ===============================  =========================================

Both stacks run these files as they are: the command line adds only where to listen,
where data goes, and the ACL file (natively, the tests too: the demo's, in
deploy/redis/demo-secrets/, written by deploy/redis/generate_acl.py). A service connects as
the user of its own name (services.registry.redis_url_as), its password read from
``<NAME>_REDIS_PASSWORD_FILE``; people, the drills and the tests' checks as the
password-protected ``default`` (ADMIN); health checks as ``probe`` (PING only).
The demo passwords are for laptops only: compose reads the same files as secrets,
Kubernetes gets them only in the dev overlay.
"""

from collections.abc import Mapping
from pathlib import Path

from services import registry

REDIS_DIR = Path(__file__).resolve().parents[1] / "deploy/redis"
CONFIGS = {
    registry.REDIS: REDIS_DIR / "redis.conf",
    registry.REDIS_LIMITS: REDIS_DIR / "redis-limits.conf",
}
DEMO_SECRETS = REDIS_DIR / "demo-secrets"
# Every command, every key: for people and drills, never a service. Redis's own
# ``default`` user, behind a password (deploy/redis/generate_acl.py says why).
ADMIN = "default"
ADMIN_PASSWORD = DEMO_SECRETS / "admin.password"
# PING only, any password: what health checks and readiness probes log in as.
PROBE = "probe"


def redis_command(port: int, data_dir: Path, redis: str = registry.REDIS) -> list[str]:
    """A redis-server on loopback with ``redis``'s own configuration (CONFIGS), its
    data in ``data_dir`` (only the data Redis keeps any), the demo's users."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        "redis-server",
        str(CONFIGS[redis]),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--aclfile",
        str(DEMO_SECRETS / f"{redis}.acl"),
    ]


def password_file(user: str) -> Path:
    """The demo password of a Redis user (a service's name, or ADMIN)."""
    return ADMIN_PASSWORD if user == ADMIN else DEMO_SECRETS / f"{user}.password"


def admin_url(port: int, db: int = 0) -> str:
    """A URL with the admin's demo credentials in it: for the drills and the tests'
    own checks, never for a service (they read their password from a file)."""
    password = password_file(ADMIN).read_text().rstrip("\r\n")
    return f"redis://{ADMIN}:{password}@127.0.0.1:{port}/{db}"


def password_environment() -> dict[str, str]:
    """``<NAME>_REDIS_PASSWORD_FILE`` of every service that uses a Redis."""
    return {
        f"{s.name.upper()}_REDIS_PASSWORD_FILE": str(password_file(s.name))
        for s in registry.SERVICES
        if s.redis is not None
    }


def urls(ports: Mapping[str, int]) -> dict[str, str]:
    """Each Redis's URL by its registry name, given its port (no user: each caller
    adds its own, services.registry.dependency_environment)."""
    return {redis: f"redis://127.0.0.1:{ports[redis]}/0" for redis in registry.REDISES}
