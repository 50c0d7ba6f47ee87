"""The Redis ACL files are written from one set of rules (deploy/redis/generate_acl.py):
the committed demo files are current, and yours come out the same with your passwords."""

import hashlib
from pathlib import Path

from deploy.redis.generate_acl import DEMO_SECRETS, acl_files, main
from services.gateway.rate_limit import KEY_PREFIX


def users(acl: str) -> dict[str, str]:
    return {line.split()[1]: line for line in acl.splitlines()}


def test_the_committed_demo_files_are_what_the_rules_make() -> None:
    for name, text in acl_files(DEMO_SECRETS).items():
        assert (DEMO_SECRETS / name).read_text() == text, "run deploy/redis/generate_acl.py"


def test_each_redis_knows_only_its_services_user() -> None:
    files = acl_files(DEMO_SECRETS)
    assert set(users(files["redis.acl"])) == {"default", "probe", "cache"}
    assert set(users(files["redis-limits.acl"])) == {"default", "probe", "gateway"}
    # The limiter's keys are the ones services/gateway/rate_limit.py writes.
    assert f" ~{KEY_PREFIX}:* " in users(files["redis-limits.acl"])["gateway"]
    for acl in files.values():
        # default: everything, behind the admin's password (never nopass: every
        # connection starts as default); probe: PING, with any password.
        assert users(acl)["default"].endswith("~* &* +@all")
        assert "nopass" not in users(acl)["default"]
        assert users(acl)["probe"].endswith("nopass resetkeys resetchannels -@all +ping")


def test_your_passwords_give_your_hashes_and_never_appear(tmp_path: Path) -> None:
    passwords, out = tmp_path / "passwords", tmp_path / "out"
    passwords.mkdir()
    out.mkdir()
    for user in ("cache", "gateway", "admin"):
        (passwords / f"{user}.password").write_text(f"long-random-{user}\n")  # a newline too
    assert main(["--passwords", str(passwords), "--out", str(out)]) == 0
    text = (out / "redis.acl").read_text()
    expected = hashlib.sha256(b"long-random-cache").hexdigest()
    assert f"user cache on #{expected} " in text
    assert "long-random" not in text + (out / "redis-limits.acl").read_text()
    assert main(["--passwords", str(passwords), "--out", str(out), "--check"]) == 0
    assert main(["--out", str(out), "--check"]) == 1  # the demo passwords: other hashes
