"""Secret-sharer experiments: tables over σ and r, the privacy unit, and the plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from deniable.errors import DeniableError
from deniable.text import (
    CanaryFormat,
    SecretSharerSetup,
    exposure_vs_insertions,
    exposure_vs_sigma,
    read_text,
)

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup() -> SecretSharerSetup:
    if not TEXT.exists():
        pytest.skip(f"{TEXT} is absent")
    fmt = CanaryFormat("pin ___")
    return SecretSharerSetup(
        text=read_text(TEXT, max_chars=5_000),
        canary=fmt,
        secret="042",
        model="transformer",
        context=16,
        width=16,
        steps=5,
        batch_size=16,
        beam_width=4,
    )


def test_exposure_vs_sigma_table_and_plot(setup: SecretSharerSetup, tmp_path: Path) -> None:
    table = exposure_vs_sigma(
        setup, noise_multipliers=(0.0, 1.0), repeats=4, plot_dir=tmp_path / "plots"
    )
    # σ = 0 once (no unit), σ = 1 at example and user level.
    assert [(r.noise_multiplier, r.unit) for r in table.rows] == [
        (0.0, "none"),
        (1.0, "example"),
        (1.0, "user"),
    ]
    none, example, user = table.rows
    assert none.epsilon is None and none.relation is None
    assert example.relation == user.relation == "add_remove" and user.accountant == "pld"
    assert example.epsilon is not None and user.epsilon is not None
    # User level has 3 fewer units (the 4 insertions are one), so a slightly higher rate q.
    assert 0 < example.epsilon < user.epsilon
    assert example.train_windows == user.train_windows == none.train_windows
    assert example.privacy_units == example.train_windows
    assert user.privacy_units == user.train_windows - 4 + 1
    for row in table.rows:
        assert row.repeats == 4 and row.exposure_method == "exact"
        assert 0 <= row.exposure <= row.max_exposure
        assert row.test_bits_per_char > 0
    assert table.plot is not None and table.plot.name == "exposure_vs_sigma.png"
    assert table.plot.read_bytes()[:8] == PNG
    assert len(table.to_dicts()) == 3


def test_exposure_vs_insertions_table_and_plot(setup: SecretSharerSetup, tmp_path: Path) -> None:
    table = exposure_vs_insertions(
        setup, repeats=(0, 2), noise_multiplier=2.0, units=("user",), plot_dir=tmp_path
    )
    assert [(r.repeats, r.unit) for r in table.rows] == [(0, "user"), (2, "user")]
    assert table.rows[0].privacy_units == table.rows[0].train_windows
    assert table.plot == tmp_path / "exposure_vs_insertions.png"
    assert table.plot.read_bytes()[:8] == PNG
    without_plot = exposure_vs_insertions(setup, repeats=(1,), noise_multiplier=0.0)
    assert without_plot.plot is None and without_plot.rows[0].unit == "none"


def test_setup_and_run_arguments_are_checked(setup: SecretSharerSetup) -> None:
    fmt = CanaryFormat("my long canary is ____")
    with pytest.raises(DeniableError, match="context"):
        SecretSharerSetup(text="abc", canary=fmt, secret="1234", context=8)
    with pytest.raises(DeniableError, match="secret"):
        SecretSharerSetup(text="abc", canary=fmt, secret="12")
    with pytest.raises(DeniableError, match="model"):
        SecretSharerSetup(text="abc", canary=fmt, secret="1234", model="gpt")
    with pytest.raises(DeniableError, match="noise_multiplier"):
        exposure_vs_sigma(setup, noise_multipliers=(-1.0,), repeats=1)
    with pytest.raises(DeniableError, match="unit"):
        exposure_vs_sigma(setup, noise_multipliers=(1.0,), repeats=1, units=("group",))
