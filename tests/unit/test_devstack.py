"""The native stack's wiring: pure checks, no processes."""

from pathlib import Path

from devstack.native import REPO, Ports, collector_environment, components


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
