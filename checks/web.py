#!/usr/bin/env python3
"""The chat page's bundle, the Swagger UI files and the docs' Mermaid are what `make web`
builds.

    python3 checks/web.py            # checksums only: no Node needed
    python3 checks/web.py --rebuild  # also rebuild with npm, compare byte for byte

`make web` (web/build.mjs) writes web/checksums.sha256: a SHA-256 of every input
(web/package.json, the lock file, web/.npmrc, the build script, web/src/**) and
of every file it writes (the page's chat.js and Swagger UI's files in services/,
Mermaid's browser build in docs/assets/javascripts/).
The committed files are stale when any of them no longer matches, when a source
in web/src is not in the list, when a listed file is missing, or (with --rebuild:
`npm ci` from the lock file, then the build into a scratch folder) when a fresh
build differs from what is committed.

Exit status 0 when all pass, 1 otherwise. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
CHECKSUMS = WEB / "checksums.sha256"
SOURCES = "web/src"


def recorded(checksums: Path) -> dict[str, str]:
    """path -> digest, from a `sha256sum`-style file."""
    pairs = (line.split("  ", 1) for line in checksums.read_text().splitlines() if line)
    return {path: digest for digest, path in pairs}


def sources(root: Path) -> set[str]:
    """The files that must be listed whatever the list says: every source."""
    return {str(p.relative_to(root)) for p in (root / SOURCES).rglob("*") if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale(root: Path = REPO) -> list[str]:
    """What does not match web/checksums.sha256 (empty: everything does)."""
    expected = recorded(root / "web/checksums.sha256")
    problems = [f"{path}: not in web/checksums.sha256" for path in sources(root) - set(expected)]
    for path, digest in sorted(expected.items()):
        file = root / path
        if not file.is_file():
            problems.append(f"{path}: missing")
        elif sha256(file) != digest:
            problems.append(f"{path}: changed since `make web`")
    return problems


def rebuild_differs() -> list[str]:
    """Build from the lock file into a scratch folder; what differs from the repository."""
    npm = shutil.which("npm")
    if npm is None:
        return ["npm is not installed: cannot rebuild (the checksums were checked)"]
    # npm from PATH with fixed arguments: nothing here comes from input.
    install = [npm, "ci", "--no-audit", "--no-fund", "--silent"]
    subprocess.run(install, cwd=WEB, check=True)  # noqa: S603
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        (out / "web").mkdir()
        env = {**os.environ, "OUT_DIR": scratch}
        subprocess.run([npm, "run", "--silent", "build"], cwd=WEB, check=True, env=env)  # noqa: S603
        built = recorded(out / "web/checksums.sha256")
    committed = recorded(CHECKSUMS)
    return [
        f"{path}: a fresh build differs"
        for path in sorted(set(built) | set(committed))
        if built.get(path) != committed.get(path)
    ]


def main(argv: list[str]) -> int:
    problems = stale()
    if not problems and "--rebuild" in argv:
        problems = rebuild_differs()
    for problem in problems:
        print(f"STALE {problem}")
    if problems:
        print("run `make web` and commit what it changes")
        return 1
    print("ok: the chat page, Swagger UI and the docs' Mermaid are what `make web` builds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
