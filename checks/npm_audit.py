#!/usr/bin/env python3
"""The chat page's npm packages (web/package-lock.json) against the registry's
advisories: `npm audit`, where the registry answers it.

    python -m checks.npm_audit                     # make check: skipped where it cannot run
    python -m checks.npm_audit --require-registry  # .github/workflows/security.yml

`npm audit --package-lock-only` reads the lock file alone (nothing is installed) and
asks the registry's bulk advisory endpoint about every package in it, build tools
included: they run on the machines that build the page. A registry or mirror that
does not serve that endpoint (some answer 404 or 405), or no npm at all, makes the
check skip with the reason; with --require-registry that is a failure instead.

Exit status 0: no advisory; 1: advisories (each package, its severity and advisory)
or, with --require-registry, no answer; 77: skipped (automake's convention, which
checks/all.sh reports as SKIPPED). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
SKIPPED = 77


def advisories(report: dict[str, Any]) -> list[str]:
    """One line per vulnerable package of an `npm audit --json` report (version 2)."""
    lines = []
    for name, entry in sorted(report.get("vulnerabilities", {}).items()):
        via = [v["title"] if isinstance(v, dict) else f"through {v}" for v in entry.get("via", [])]
        fix = "fix available" if entry.get("fixAvailable") else "no fix yet"
        lines.append(f"{name} ({entry.get('severity')}, {fix}): {'; '.join(via)}")
    return lines


def no_answer(report: dict[str, Any]) -> str | None:
    """Why the registry gave no audit, or None for a real report."""
    if "auditReportVersion" in report and "vulnerabilities" in report:
        return None
    error = report.get("error")
    summary = error.get("summary") if isinstance(error, dict) else None
    return str(report.get("message") or summary or "no audit report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks.npm_audit", description=__doc__)
    parser.add_argument(
        "--require-registry", action="store_true", help="fail, not skip, without an answer"
    )
    args = parser.parse_args(argv)
    cannot, outcome = (1, "FAIL") if args.require_registry else (SKIPPED, "SKIPPED")

    npm = shutil.which("npm")
    if npm is None:
        print(f"check_npm_audit: {outcome}: npm is not installed", file=sys.stderr)
        return cannot
    # S603: npm from PATH, fixed arguments.
    result = subprocess.run(  # noqa: S603
        [npm, "audit", "--package-lock-only", "--json"],
        cwd=WEB,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        report = {"message": result.stderr.strip() or "output that is not JSON"}
    reason = no_answer(report)
    if reason is not None:
        print(f"check_npm_audit: {outcome}: the registry does not answer npm audit ({reason})")
        return cannot
    found = advisories(report)
    for line in found:
        print(f"FAIL {line}", file=sys.stderr)
    if found:
        print(
            f"check_npm_audit: {len(found)} vulnerable package(s) in web/package-lock.json: "
            "update them (npm update, or an `overrides` entry in web/package.json), then make web",
            file=sys.stderr,
        )
        return 1
    total = report.get("metadata", {}).get("dependencies", {}).get("total", "?")
    print(f"check_npm_audit: OK (no advisory for the {total} packages of web/package-lock.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
