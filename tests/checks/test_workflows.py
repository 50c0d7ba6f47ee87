"""The workflows check's own rules (checks/workflows.py) on small inputs, and on the
repository as committed. actionlint and zizmor run in `make check` itself."""

import json
from pathlib import Path

import pytest

from checks import workflows
from checks.workflows import RENOVATE, REPO, pin_problems, renovate_problems

SHA = "3d3c42e5aac5ba805825da76410c181273ba90b1"


def workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *uses: str) -> Path:
    """A workflow of these steps; problems name it relative to its folder."""
    monkeypatch.setattr(workflows, "REPO", tmp_path)
    path = tmp_path / "w.yml"
    steps = "".join(f"      - uses: {line}\n" for line in uses)
    path.write_text(f"jobs:\n  a:\n    steps:\n{steps}")
    return path


def test_a_pin_by_commit_with_its_version_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workflow(
        tmp_path,
        monkeypatch,
        f"actions/checkout@{SHA} # v7.0.1",
        f"github/codeql-action/init@{SHA} # v4.36.2",
        "./.github/actions/local",  # in this repository: nothing to pin
    )
    assert pin_problems([path]) == []


@pytest.mark.parametrize(
    ("uses", "problem"),
    [
        ("actions/checkout@v7", "is not pinned by a full commit"),
        ("actions/checkout@main", "is not pinned by a full commit"),
        (f"actions/checkout@{SHA[:12]} # v7.0.1", "is not pinned by a full commit"),
        (f"actions/checkout@{SHA}", "has no `# v<version>` beside it"),
        (f"actions/checkout@{SHA} # latest", "has no `# v<version>` beside it"),
    ],
)
def test_a_pin_by_tag_branch_short_commit_or_without_version_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uses: str, problem: str
) -> None:
    problems = pin_problems([workflow(tmp_path, monkeypatch, uses)])
    assert len(problems) == 1 and problem in problems[0], problems
    assert problems[0].startswith("w.yml:4: ")


def test_one_repository_pinned_to_two_commits_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "8aad20d150bbac5944a9f9d289da16a4b0d87c1e"
    path = workflow(
        tmp_path,
        monkeypatch,
        f"github/codeql-action/init@{SHA} # v4.36.2",
        f"github/codeql-action/analyze@{other} # v4.36.3",
    )
    assert pin_problems([path]) == [
        f"github/codeql-action is pinned to 2 commits: {SHA} v4.36.2, {other} v4.36.3"
    ]


def test_the_repositorys_workflows_pin_every_action() -> None:
    files = sorted((REPO / ".github/workflows").glob("*.yml"))
    assert files
    assert pin_problems(files) == []


def test_renovate_reaches_every_pin_of_the_repository() -> None:
    assert renovate_problems(json.loads(RENOVATE.read_text()), REPO) == []


def test_a_pin_no_renovate_manager_matches_is_reported(tmp_path: Path) -> None:
    (tmp_path / "otel-collector").mkdir()
    (tmp_path / ".env").write_text(
        "# pins\nREDIS_IMAGE=redis:8.10.2-alpine\nBUSYBOX_IMAGE=busybox\n"
    )
    (tmp_path / "Makefile").write_text("UV_VERSION := 0.13.9\n")
    (tmp_path / "otel-collector/builder-config.yaml").write_text(
        "receivers:\n  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v0.165.0\n"
    )
    config = json.loads(RENOVATE.read_text())
    assert renovate_problems(config, tmp_path) == [
        ".env: no Renovate manager updates 'BUSYBOX_IMAGE=busybox'"
    ]
    del config["customManagers"][1]  # uv's
    assert ".env: no Renovate manager updates 'UV_VERSION" not in str(
        renovate_problems(config, tmp_path)
    )  # no UV_VERSION in this .env
    assert "Makefile: no Renovate manager updates 'UV_VERSION := 0.13.9'" in renovate_problems(
        config, tmp_path
    )


def test_a_uses_in_a_block_of_text_is_not_an_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CodeQL's `config:` names its query suites with `uses:` too."""
    path = workflow(tmp_path, monkeypatch, f"github/codeql-action/init@{SHA} # v4.36.2")
    config = "        with:\n          config: |\n            queries:\n"
    path.write_text(path.read_text() + config + "              - uses: security-extended\n")
    assert pin_problems([path]) == []
