"""The native stack's wiring: pure checks, no processes."""

from pathlib import Path

import pytest

from stack.native import REPO, Ports, collector_environment, components
from traces.trace_id import full_trace_id


def test_native_env_file_matches_what_make_dev_sets() -> None:
    """otel-collector/native.env (used by `make check`) and stack/native.py agree."""
    lines = (REPO / "otel-collector/native.env").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert pairs == collector_environment(Ports())


def test_every_component_binds_loopback_only(tmp_path: Path) -> None:
    ports = Ports.free()
    assert len(set(ports.named().values())) == len(ports.named())  # no port used twice
    for component in components(ports, tmp_path):
        for value in [*component.command, *component.env.values()]:
            assert "0.0.0.0" not in value, (component.name, value)  # noqa: S104


@pytest.mark.parametrize(
    ("given", "full"),
    [
        # As Tempo's search returns it: leading zeros gone.
        ("394a2e1c5d6f7a8b9c0d1e2f3a4b5c6", "0394a2e1c5d6f7a8b9c0d1e2f3a4b5c6"),
        ("ab", "000000000000000000000000000000ab"),
        ("4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        (" 4bf92f3577b34da6a3ce929d0e0e4736\n", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ],
)
def test_full_trace_id_restores_32_hex_digits(given: str, full: str) -> None:
    assert full_trace_id(given) == full


@pytest.mark.parametrize("bad", ["", "xyz", "0" * 32, "0", "1" * 33, "4bf9-2f35", "0x4bf9"])
def test_full_trace_id_rejects_what_is_no_trace_id(bad: str) -> None:
    with pytest.raises(ValueError, match="trace id"):
        full_trace_id(bad)
