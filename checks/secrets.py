#!/usr/bin/env python3
"""No secret in the working tree: gitleaks over every file git tracks or would add.

    python -m checks.secrets     (make check runs it; tools: tools/build.sh gitleaks)

The files are those of `git ls-files --cached --others --exclude-standard` (tracked,
and new ones not ignored), copied into a scratch folder that gitleaks then scans as a
directory: the git-ignored folders (.venv, .tools, node_modules) hold other projects'
files, test keys among them, and are not this repository's to answer for. The copy
keeps the repository's paths, so .gitleaks.toml (upstream's rules; the demo's own
credentials allowed, with why) and .gitleaksignore apply as they do in the history
scan of .github/workflows/security.yml, and a line marked `gitleaks:allow` is skipped.

Exit status 0 when nothing is found, 1 otherwise (each finding: file, line, rule; the
secret itself redacted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GITLEAKS = Path(os.environ.get("TOOLS_DIR", REPO / ".tools")) / "bin" / "gitleaks"


def working_tree_files(repo: Path = REPO) -> list[str]:
    """Tracked files and untracked ones git would add, that exist as regular files
    (symbolic links point at files that are listed themselves)."""
    # git from PATH with fixed arguments.
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    return sorted({f for f in listed if f and (repo / f).is_file() and not (repo / f).is_symlink()})


def scan(files: list[str], repo: Path = REPO, gitleaks: Path = GITLEAKS) -> list[dict[str, object]]:
    """gitleaks' findings in ``files`` (paths relative to ``repo``)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tree"
        for name in files:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(repo / name, copy / name)
        report = Path(tmp) / "report.json"
        command = [str(gitleaks), "dir", ".", "--no-banner", "--redact", "--exit-code", "0"]
        command += ["--report-format", "json", "--report-path", str(report), "--log-level", "warn"]
        # S603: the gitleaks this repository pins, on our own scratch copy.
        result = subprocess.run(  # noqa: S603
            command,
            cwd=copy,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"gitleaks failed ({result.returncode}): {result.stderr.strip()}")
        findings: list[dict[str, object]] = json.loads(report.read_text() or "[]")
        return findings


def main() -> int:
    if not GITLEAKS.exists():
        print(f"check_secrets: {GITLEAKS} missing: tools/build.sh gitleaks", file=sys.stderr)
        return 1
    files = working_tree_files()
    findings = scan(files)
    if not findings:
        print(f"check_secrets: OK ({len(files)} files of the working tree, .gitleaks.toml)")
        return 0
    lines = [
        f"FAIL {f['File']}:{f['StartLine']}: {f['RuleID']} ({f['Description']})" for f in findings
    ]
    lines.append(
        f"check_secrets: {len(findings)} finding(s). Remove the secret (and rotate it), or, "
        "for a value that is not one, add `gitleaks:allow` and why on its line"
    )
    print("\n".join(lines), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
