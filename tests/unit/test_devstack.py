"""The native stack's wiring: pure checks, no processes."""

from pathlib import Path

from devstack.native import REPO, Ports, collector_environment, components
from devstack.otlp_json import flatten
from devstack.trace import render


def test_native_env_file_matches_what_make_dev_sets() -> None:
    """otel-collector/native.env (used by `make check`) and devstack agree."""
    lines = (REPO / "otel-collector/native.env").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert pairs == collector_environment(Ports())


def test_every_component_binds_loopback_only(tmp_path: Path) -> None:
    ports = Ports.free()
    assert len(set(vars(ports).values())) == len(vars(ports))  # no port used twice
    for component in components(ports, tmp_path):
        for value in [*component.command, *component.env.values()]:
            assert "0.0.0.0" not in value, (component.name, value)  # noqa: S104


def test_trace_tree_nests_children_in_start_order() -> None:
    def span(span_id: str, parent: str, name: str, start: int) -> dict[str, object]:
        return {
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": 2,
            "startTimeUnixNano": str(start * 1_000_000),
            "endTimeUnixNano": str((start + 2) * 1_000_000),
            "status": {"code": 2} if name == "boom" else {},
        }

    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "chat"}}]}
    spans = [span("b", "a", "second", 5), span("a", "", "root", 0), span("c", "a", "boom", 1)]
    tree = render(flatten([{"resource": resource, "scopeSpans": [{"spans": spans}]}]))
    names = [line.split()[0] for line in tree.splitlines()]
    assert names == ["root", "boom", "second"]
    assert tree.splitlines()[1].startswith("  boom") and tree.splitlines()[1].endswith("ERROR")
    assert "2.0 ms" in tree.splitlines()[0]
