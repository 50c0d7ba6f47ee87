#!/usr/bin/env python3
"""The documentation builds strictly, works offline, and names only what exists.

    python checks/docs.py     (make check runs it; needs the docs group: mkdocs)

1. Build: `mkdocs build --strict` of mkdocs.yml into a temporary folder. Strict turns
   every warning into a failure: a link to a missing page or anchor, a page left out of
   the nav, a missing included file (pymdownx.snippets, check_paths), and a repository
   path in inline code that names nothing (docs/hooks.py).
2. Offline: the built site loads nothing from another host. No HTML page has a script,
   stylesheet, font, image or frame with an absolute http(s) or protocol-relative
   address (links to read elsewhere are fine); no CSS imports or points url() at one;
   no JavaScript names a script, stylesheet or font on another host, or any address on
   a CDN, except the loaders of LOADERS, each of which runs only in a case this site
   rules out, checked here too (Mermaid: every page loads the local copy first).
3. README.md: every relative link resolves to a file (and an anchor to a heading of a
   Markdown file), and every repository path it names in inline code exists (the rule
   of docs/hooks.py).
4. Make targets: every `make <target>` that README.md or a page writes as code (inline
   or in a code block) is a target of the Makefile (pattern rules included: run-%).

Exit status 0 when all pass, 1 otherwise. Standard library, and mkdocs for the build.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
MERMAID = "assets/javascripts/mermaid.min.js"

# Attributes whose address the browser fetches by itself, per tag.
FETCHED = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "embed": ("src",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
    "object": ("data",),
    "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
}
# <link> relations that only name a document, never make the browser fetch it.
LINK_NOT_FETCHED = {"canonical", "alternate", "next", "prev", "author", "license"}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""")
CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'");\s]+)""")
JS_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?:[/?][^\s"'`)<>\\]*)?""")
CDN_HOSTS = {
    "unpkg.com",
    "cdn.jsdelivr.net",
    "cdnjs.cloudflare.com",
    "fonts.googleapis.com",
    "fonts.gstatic.com",
    "esm.sh",
    "cdn.skypack.dev",
    "ga.jspm.io",
    "www.googletagmanager.com",
    "www.google-analytics.com",
}
ASSET_SUFFIXES = (".js", ".mjs", ".css", ".woff", ".woff2", ".ttf", ".otf", ".eot")


@dataclass(frozen=True)
class Loader:
    """A fetch from another host that shipped code keeps for a case this site rules
    out: the address it starts with, why it never runs here, and the check of that."""

    prefix: str
    why: str
    holds: Callable[[list[Path], Path], str | None]  # (pages, site) -> problem or None


def _every_page_loads_mermaid(pages: list[Path], site: Path) -> str | None:
    for page in pages:
        scripts = _parse(page).scripts
        if not any(src.endswith(MERMAID) for src in scripts):
            return f"{page.relative_to(site)} does not load {MERMAID}"
    return None


def _no_repository_widget(pages: list[Path], site: Path) -> str | None:
    for page in pages:
        if 'data-md-component="source"' in page.read_text(encoding="utf-8"):
            return f"{page.relative_to(site)} shows a repository widget (repo_url is set)"
    return None


LOADERS = (
    # mkdocs-material's diagrams: it fetches Mermaid only when the page has no global
    # `mermaid` (components/content/mermaid/index.ts, fetchScripts); the site's own copy,
    # a synchronous script, defines it before the page's content is mounted.
    Loader(
        "https://unpkg.com/mermaid@",
        "Mermaid, when no local copy loaded",
        _every_page_loads_mermaid,
    ),
    # Its ResizeObserver polyfill: only in a browser without ResizeObserver, which every
    # current browser has; nothing to check in the site.
    Loader(
        "https://unpkg.com/resize-observer-polyfill",
        "a polyfill for old browsers",
        lambda p, s: None,
    ),
    # Its repository widget's facts (stars, version): only with repo_url set.
    Loader("https://api.github.com/", "the repository widget", _no_repository_widget),
)


def _external(address: str) -> bool:
    return address.startswith(("http://", "https://", "//"))


@dataclass
class Parsed:
    fetched: list[str]  # every address the page makes the browser fetch
    scripts: list[str]
    styles: list[str]  # inline <style> blocks and style="..." attributes


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed([], [], [])
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "style" in values:
            self.parsed.styles.append(values["style"])
        if tag == "style":
            self._in_style = True
        if tag == "link":
            rels = set(values.get("rel", "").lower().split())
            if not rels & LINK_NOT_FETCHED:
                self.parsed.fetched.append(values.get("href", ""))
            return
        for name in FETCHED.get(tag, ()):
            if name in values:
                # srcset: "a.png 1x, b.png 2x"
                for candidate in values[name].split(","):
                    self.parsed.fetched.append(candidate.strip().split(" ")[0])
        if tag == "script" and "src" in values:
            self.parsed.scripts.append(values["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.parsed.styles.append(data)


def _parse(page: Path) -> Parsed:
    parser = _PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.parsed


def css_problems(css: str) -> list[str]:
    """Addresses a stylesheet makes the browser fetch from another host."""
    found = dict.fromkeys(CSS_URL.findall(css) + CSS_IMPORT.findall(css))  # @import url(..)
    return [address for address in found if _external(address)]


def js_problems(js: str) -> list[str]:
    """Addresses on another host that a script may load (not every URL it contains:
    licence texts, namespaces and error messages name many)."""
    problems = []
    for address in JS_URL.findall(js):
        if not _external(address):
            continue
        parts = urlsplit(address if "://" in address else "https:" + address)
        host = parts.hostname or ""
        if host == "github.com":  # pages to read (source viewers); github.com serves no scripts
            continue
        if host in CDN_HOSTS or parts.path.endswith(ASSET_SUFFIXES):
            problems.append(address)
    return problems


def offline_problems(site: Path) -> list[str]:
    """Everything in the built site that would load from another host."""
    problems = []
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        where = page.relative_to(site)
        parsed = _parse(page)
        problems += [f"{where}: loads {a}" for a in parsed.fetched if _external(a)]
        for style in parsed.styles:
            problems += [f"{where}: style loads {a}" for a in css_problems(style)]
    for sheet in sorted(site.rglob("*.css")):
        css = sheet.read_text(encoding="utf-8", errors="replace")
        problems += [f"{sheet.relative_to(site)}: loads {a}" for a in css_problems(css)]
    loaders_used: set[Loader] = set()
    for script in sorted(site.rglob("*.js")):
        js = script.read_text(encoding="utf-8", errors="replace")
        for address in JS_URL.findall(js):
            loader = next((lo for lo in LOADERS if address.startswith(lo.prefix)), None)
            if loader is not None:
                loaders_used.add(loader)
            elif js_problems(address):
                problems.append(f"{script.relative_to(site)}: may load {address}")
    for loader in sorted(loaders_used, key=lambda lo: lo.prefix):
        problem = loader.holds(pages, site)
        if problem is not None:
            problems.append(f"{loader.prefix}… ({loader.why}) would load: {problem}")
    return problems


def build(site: Path, config: Path = REPO / "mkdocs.yml") -> bool:
    """`mkdocs build --strict` of ``config`` into ``site``; False when it fails."""
    # Material for MkDocs prints a notice of its end of life (maintained until May 2027)
    # on every build; `make docs` still shows it.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # Not --quiet: it hides the warnings, and --strict then finds none to fail on.
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(config), "--site-dir", str(site)]
    # The interpreter running this script, with fixed arguments.
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode == 0  # noqa: S603


@functools.cache
def load_hooks() -> ModuleType:
    """docs/hooks.py (the build's own path check), loaded by its path: docs/ is no package."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code(markdown: str) -> Iterator[str]:
    """The text of code in ``markdown``: fenced blocks, then inline spans."""
    hooks = load_hooks()
    for block in hooks.FENCE.finditer(markdown):
        yield block.group(0)
    for span in hooks.INLINE_CODE.finditer(hooks.FENCE.sub("", markdown)):
        yield span.group(1)


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def readme_problems(readme: Path = README, root: Path = REPO) -> list[str]:
    """Relative links of the README that resolve to nothing, and paths it names that
    do not exist."""
    text = readme.read_text(encoding="utf-8")
    prose = load_hooks().FENCE.sub("", text)
    problems = []
    for target in dict.fromkeys(LINK.findall(prose)):
        if re.match(r"[a-z]+:", target) or target.startswith("//"):
            continue  # http(s), mailto: read elsewhere
        path, _, anchor = target.partition("#")
        file = (readme.parent / path) if path else readme
        if not file.exists():
            problems.append(f"{readme.name}: link to {target}: no such file")
            continue
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", file.read_text(encoding="utf-8"), re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                problems.append(f"{readme.name}: link to {target}: no such heading")
    for path in load_hooks().missing_paths(text, root):
        problems.append(f"{readme.name}: `{path}` names no file or folder in the repository")
    return problems


MAKE_TARGET = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.%-]*)\s*:(?!=)", re.M)
MAKE_CALL = re.compile(r"(?<![\w$(-])make((?:\s+[A-Z_]+=\S*)*)\s+([a-z][a-z0-9-]*(?:<[^>\s]+>)?)")


def make_targets(makefile: Path = MAKEFILE) -> set[str]:
    """The Makefile's targets (pattern rules as they are, e.g. run-%)."""
    return {
        name
        for name in MAKE_TARGET.findall(makefile.read_text(encoding="utf-8"))
        if not name.startswith(".")
    }


def named_targets(markdown: str) -> set[str]:
    """Every target of a `make ...` command written as code in ``markdown``."""
    return {match.group(2) for code in _code(markdown) for match in MAKE_CALL.finditer(code)}


def target_problems(files: list[Path], makefile: Path = MAKEFILE) -> list[str]:
    targets = make_targets(makefile)
    patterns = [t.replace("%", "*") for t in targets if "%" in t]
    problems = []
    for file in files:
        for name in sorted(named_targets(file.read_text(encoding="utf-8"))):
            concrete = re.sub(r"<[^>]+>", "x", name)  # run-<service>
            known = concrete in targets or any(fnmatch.fnmatchcase(concrete, p) for p in patterns)
            if not known:
                where = file.relative_to(REPO) if file.is_relative_to(REPO) else file
                problems.append(f"{where}: `make {name}` is no target of the Makefile")
    return problems


def main() -> int:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="otel-chat-docs-") as scratch:
        site = Path(scratch)
        if not build(site):
            problems.append("mkdocs build --strict failed (its warnings above)")
        else:
            problems += offline_problems(site)
    problems += readme_problems()
    problems += target_problems([README, *sorted(DOCS.rglob("*.md"))])
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        return 1
    print("ok: the docs build strictly, load nothing from elsewhere, and name what exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
