"""The docs build's own check (mkdocs.yml `hooks:`): every repository path a page names
exists.

Pages name repository files as inline code (`services/gateway/edge.py`), not as links:
mkdocs serves only docs/, and a relative link out of it fails the strict build. So
mkdocs cannot check those names, and this hook does: an inline code span that looks like
a repository path and names nothing in the working tree is a warning, which fails
`mkdocs build --strict` (`make check`) and shows in `make docs`.

A span looks like a repository path when it is one word of path characters with a `/`
and either starts with a top-level entry of the repository (`deploy/k8s/overlays/dev`,
`experiments/results/profiles/`) or ends in a file extension of EXTENSIONS
(`experiments/bench.py`, so a misspelt first folder is caught too). Not checked: spans
with placeholders or spaces (`deploy/<service>/uvicorn.env`, `GET /cache/{key}`),
URLs, API paths (`/healthz`), and paths under git-ignored folders
(`.run/logs/chat-2.log`, which exist only at run time).
checks/docs.py applies the same rule to README.md.
"""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXTENSIONS = frozenset(
    {".py", ".pyi", ".md", ".yaml", ".yml", ".json", ".toml", ".lock", ".sh", ".conf"}
    | {".env", ".js", ".mjs", ".css", ".html", ".png", ".go", ".mod", ".sum", ".txt", ".acl"}
    | {".sha256"}
)
# Fenced code blocks (their text is commands and output, not names) and inline code.
FENCE = re.compile(r"^(?P<fence>```+|~~~+).*?^(?P=fence)\s*$", re.M | re.S)
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
PATH_CHARS = re.compile(r"[A-Za-z0-9_.\-/]+")

log = logging.getLogger("mkdocs.hooks.repo_paths")


def named_paths(markdown: str, root: Path = REPO) -> list[str]:
    """The inline code spans of ``markdown`` that look like repository paths."""
    text = FENCE.sub("", markdown)
    top = {entry.name for entry in root.iterdir()}
    paths = []
    for match in INLINE_CODE.finditer(text):
        span = match.group(1).strip()
        if "/" not in span or span.startswith("/") or not PATH_CHARS.fullmatch(span):
            continue
        first = span.split("/", 1)[0]
        if first in top or Path(span.rstrip("/")).suffix in EXTENSIONS:
            paths.append(span)
    return paths


def ignored(paths: list[str], root: Path = REPO) -> set[str]:
    """The ones git ignores (made at run time, like `.run/` or `.tools/`)."""
    if not paths:
        return set()
    try:
        # git from PATH with fixed arguments; the paths go in on stdin.
        result = subprocess.run(
            ["git", "check-ignore", "--no-index", "--stdin"],  # noqa: S607
            cwd=root,
            input="\n".join(paths),
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:  # no git: nothing counts as ignored
        return set()
    return set(result.stdout.splitlines())


def missing_paths(markdown: str, root: Path = REPO) -> list[str]:
    """Repository paths named in ``markdown`` that do not exist (in order, once each)."""
    absent = [p for p in dict.fromkeys(named_paths(markdown, root)) if not (root / p).exists()]
    skip = ignored(absent, root)
    return [p for p in absent if p not in skip]


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """mkdocs event: warn about each path the page names that does not exist."""
    for path in missing_paths(markdown):
        log.warning("%s: `%s` names no file or folder in the repository", page.file.src_path, path)
    return markdown
