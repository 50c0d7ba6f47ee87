"""The fault drills (experiments.drills), run once for these tests: the short plan
(small SDK queues, a few seconds per phase) on a native stack of their own."""

from pathlib import Path
from typing import Any

import pytest

from experiments import drills


@pytest.fixture(scope="package")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir: Path = tmp_path_factory.mktemp("drills")
    report = drills.run(run_dir, drills.FAST)
    # Beside the stack's logs, for whoever reads a failure.
    (run_dir / "report.md").write_text(drills.markdown(report))
    return report


def drill(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in report["drills"] if d["name"] == name)
    return found
