"""The docs checks' rules (docs/hooks.py, checks/docs.py) on small inputs, and
on the repository as committed: pure checks, no build (`make check` builds the site)."""

from pathlib import Path

import pytest

from checks import docs as check_docs
from checks.docs import (
    REPO,
    build,
    css_problems,
    js_problems,
    make_targets,
    named_targets,
    readme_problems,
    target_problems,
)

hooks = check_docs.load_hooks()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny repository: services/app.py, deploy/, and a git-ignored .run/."""
    (tmp_path / "services").mkdir()
    (tmp_path / "services/app.py").write_text("")
    (tmp_path / "deploy/k8s").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize(
    ("span", "checked"),
    [
        ("services/app.py", True),
        ("deploy/k8s/", True),  # a folder, by its top-level name
        ("devstak/bench.py", True),  # a misspelt first folder, caught by the extension
        ("GET /cache/{key}", False),  # an API path with a placeholder
        ("/healthz", False),
        ("deploy/<service>/uvicorn.env", False),  # a template
        ("redis://cache@redis:6379/0", False),
        ("chat/cache", False),  # two services, not a path
        ("github.com/jaegertracing/jaeger", False),  # a Go module
    ],
)
def test_a_span_is_a_repository_path_when_it_looks_like_one(
    repo: Path, span: str, checked: bool
) -> None:
    assert (hooks.named_paths(f"see `{span}` here", repo) == [span]) is checked


def test_missing_paths_are_the_named_ones_that_do_not_exist(repo: Path) -> None:
    text = "\n".join(
        [
            "`services/app.py` and `services/gone.py`, `deploy/k8s/` and `deploy/helm/`",
            "```bash",
            "cat services/also-gone.py   # commands in a code block are not names",
            "```",
            "`services/gone.py` again",
        ]
    )
    assert hooks.missing_paths(text, repo) == ["services/gone.py", "deploy/helm/"]


def test_the_committed_pages_name_only_what_exists() -> None:
    for page in sorted((REPO / "docs").rglob("*.md")):
        assert hooks.missing_paths(page.read_text()) == [], page


@pytest.mark.parametrize(
    ("css", "found"),
    [
        (
            "a{background:url(data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg'/>)}",
            [],
        ),
        ("a{background:url('../images/x.png')}", []),
        (
            "@font-face{src:url(https://fonts.gstatic.com/x.woff2)}",
            ["https://fonts.gstatic.com/x.woff2"],
        ),
        (
            '@import "//fonts.googleapis.com/css?family=Roboto";',
            ["//fonts.googleapis.com/css?family=Roboto"],
        ),
    ],
)
def test_a_stylesheet_may_load_nothing_from_elsewhere(css: str, found: list[str]) -> None:
    assert css_problems(css) == found


@pytest.mark.parametrize(
    ("js", "found"),
    [
        ('e.setAttribute("xmlns","http://www.w3.org/2000/svg")', []),  # a namespace
        ("/* see https://github.com/jquery/jquery/blob/main/src/event.js */", []),  # to read
        ('throw Error("see https://chevrotain.io/docs/FAQ.html")', []),
        (
            's.src="https://unpkg.com/lib@1/dist/lib.min.js"',
            ["https://unpkg.com/lib@1/dist/lib.min.js"],
        ),
        ('import("https://example.org/module.mjs")', ["https://example.org/module.mjs"]),
        ('fetch("//cdn.jsdelivr.net/npm/x")', ["//cdn.jsdelivr.net/npm/x"]),
    ],
)
def test_a_script_may_load_nothing_from_elsewhere(js: str, found: list[str]) -> None:
    assert js_problems(js) == found


def _site(tmp_path: Path, page: str) -> Path:
    site = tmp_path / "site"
    (site / "assets/javascripts").mkdir(parents=True)
    (site / "assets/javascripts/bundle.js").write_text(
        'typeof mermaid=="undefined"?load("https://unpkg.com/mermaid@11/dist/mermaid.min.js"):0'
    )
    (site / "index.html").write_text(page)
    return site


def test_the_mermaid_fallback_passes_only_where_every_page_loads_the_local_copy(
    tmp_path: Path,
) -> None:
    local = '<script src="assets/javascripts/mermaid.min.js"></script>'
    assert check_docs.offline_problems(_site(tmp_path / "a", local)) == []
    problems = check_docs.offline_problems(_site(tmp_path / "b", "<p>no diagram script</p>"))
    assert len(problems) == 1 and "index.html does not load" in problems[0]


@pytest.mark.parametrize(
    "tag",
    [
        '<script src="https://cdn.example.org/x.js"></script>',
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">',
        '<link rel="preconnect" href="https://fonts.gstatic.com">',
        '<img src="//img.example.org/a.png">',
        '<p style="background:url(https://example.org/a.png)">',
        "<style>@import url(https://example.org/a.css);</style>",
    ],
)
def test_a_page_may_load_nothing_from_elsewhere(tmp_path: Path, tag: str) -> None:
    page = f'<script src="assets/javascripts/mermaid.min.js"></script>{tag}'
    assert len(check_docs.offline_problems(_site(tmp_path, page))) == 1


def test_links_to_read_elsewhere_are_fine(tmp_path: Path) -> None:
    page = (
        '<script src="assets/javascripts/mermaid.min.js"></script>'
        '<a href="https://www.rfc-editor.org/rfc/rfc9457">RFC 9457</a>'
        '<link rel="canonical" href="https://example.org/">'
    )
    assert check_docs.offline_problems(_site(tmp_path, page)) == []


def test_readme_links_and_paths_must_resolve(repo: Path) -> None:
    (repo / "docs").mkdir()
    (repo / "docs/page.md").write_text("# A page\n\n## Its part\n")
    readme = repo / "README.md"
    readme.write_text(
        "[ok](docs/page.md) [ok](docs/page.md#its-part) [ok](https://example.org/x)\n"
        "[gone](docs/gone.md) [no anchor](docs/page.md#nowhere) `services/gone.py`\n"
        "```\n[in a code block](nowhere.md)\n```\n"
    )
    assert readme_problems(readme, repo) == [
        "README.md: link to docs/gone.md: no such file",
        "README.md: link to docs/page.md#nowhere: no such heading",
        "README.md: `services/gone.py` names no file or folder in the repository",
    ]


def test_the_committed_readme_resolves() -> None:
    assert readme_problems() == []


def test_make_commands_are_read_from_code_only() -> None:
    text = "\n".join(
        [
            "To make room, `make up` then `CHAT_REPLICAS=3 make dev`; `make trace ID=<id>`,",
            "`make run-<service>`, `make load USERS=40`.",
            "```bash",
            "make bench PROFILE=1",
            "$(MAKE) hidden",
            "```",
        ]
    )
    assert named_targets(text) == {"up", "dev", "trace", "run-<service>", "load", "bench"}


def test_every_named_target_exists(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text("X := 1\n.PHONY: up\nup: ## start\n\trun\nrun-%: install\n\trun $*\n")
    assert make_targets(makefile) == {"up", "run-%"}
    page = tmp_path / "page.md"
    page.write_text("`make up`, `make run-gateway`, `make run-<service>`, `make upp`\n")
    assert target_problems([page], makefile) == [f"{page}: `make upp` is no target of the Makefile"]


def test_a_strict_build_fails_on_any_warning(tmp_path: Path) -> None:
    """One real mkdocs build each way: a warning (here, a link to a page that does not
    exist) must fail it, however the build is told to log."""
    (tmp_path / "docs").mkdir()
    config = tmp_path / "mkdocs.yml"
    config.write_text("site_name: t\nnav:\n  - index.md\n")
    (tmp_path / "docs/index.md").write_text("# T\n\n[elsewhere](elsewhere.md)\n")
    assert not build(tmp_path / "site", config)
    (tmp_path / "docs/index.md").write_text("# T\n")
    assert build(tmp_path / "site", config)
