"""LiRA against a finished run (deniable.lira_audit and `deniable audit --lira`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from deniable.config import TrainConfig
from deniable.data import Split, load_dataset
from deniable.errors import DeniableError
from deniable.lira_audit import audit_population, lira_audit
from deniable.train.trainer import train_baseline


def small_digits(n_train: int = 200) -> Split:
    split = load_dataset("digits")
    return Split(train=split.train.subset(np.arange(n_train)), test=split.test)


def test_population_is_balanced_and_seeded() -> None:
    split = small_digits()
    population, is_member = audit_population(split, 150, seed=0)
    assert len(population) == 300 and is_member.sum() == 150 and is_member[:150].all()
    again, _ = audit_population(split, 150, seed=0)
    np.testing.assert_array_equal(population.features, again.features)
    members = {row.tobytes() for row in split.train.features}
    assert all(row.tobytes() in members for row in population.features[:150])


def test_lira_finds_the_members_of_an_overfit_non_private_model() -> None:
    """An MLP trained without privacy for 60 epochs on 200 digits memorises them: online LiRA
    with 8 shadows trained the same way separates members from test examples (AUC > 0.6 seen
    0.7+ with this seed; chance is 0.5)."""
    split = small_digits()
    config = TrainConfig(
        model="mlp", baseline_epochs=60, batch_size=32, noise_multiplier=1.0, target_epsilon=None
    )
    model, _, train_accuracy = train_baseline(split, config)
    assert train_accuracy > 0.99
    out = lira_audit(split, config, model, noise_multiplier=None, shadows=8, max_examples=150)
    attacks = out["attacks"]
    assert isinstance(attacks, dict)
    assert attacks["lira_online"]["auc"] > 0.6
    assert attacks["lira_online"]["n_members"] == attacks["lira_online"]["n_nonmembers"] == 150
    assert out["fixed_variance"] is True and out["note"] is not None  # < 1000 non-members


def test_placements_are_refused() -> None:
    split = small_digits()
    config = TrainConfig(method="label-dp", target_epsilon=3.0)
    model, _, _ = train_baseline(split, config)
    with pytest.raises(DeniableError, match="only dpsgd"):
        lira_audit(split, config, model, noise_multiplier=None)


def test_audit_command_adds_lira_to_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "--model", "logreg", "--epochs", "2", "--run-dir", str(run_dir), "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    args = ["audit", str(run_dir), "--lira", "4", "--no-canary-audit", "--max-examples", "100"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "lira_online: AUC" in out
    saved = json.loads((run_dir / "result.json").read_text())
    lira = saved["audit"]["lira"]
    assert lira["shadows"] == 4 and lira["population"] == 200
    assert lira["shadow_training"]["dp"]["noise_multiplier"] == pytest.approx(
        saved["noise_multiplier"]
    )
    code, _, err = run_cli(["audit", "--config", "x.toml", "--lira", "4"], capsys)
    assert code != 0 and "--lira" in err and len(err.strip().splitlines()) == 1


def test_audit_command_trains_the_shadows_on_ray_with_the_same_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--workers 2 --backend ray`` (skipped without Ray): DP shadows are bit-identical on every
    backend, so the LiRA block equals the one-process block but for the recorded workers and
    backend. A bad backend, as a flag or as the ``[audit]`` key of a defaults file, is one line
    on stderr before anything runs."""
    run_dir = tmp_path / "run"
    args = ["train", "--model", "logreg", "--epochs", "2", "--run-dir", str(run_dir), "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    code, _, err = run_cli(["audit", str(run_dir), "--lira", "4", "--backend", "threads"], capsys)
    assert code == 2 and err == "error: --backend must be 'processes' or 'ray', got 'threads'\n"
    defaults = tmp_path / "defaults.toml"
    defaults.write_text('[audit]\nbackend = "threads"\n')
    code, _, err = run_cli(["--defaults", str(defaults), "audit", str(run_dir)], capsys)
    assert code == 2 and "--backend must be" in err and len(err.strip().splitlines()) == 1
    pytest.importorskip("ray", reason="Ray (deniable[ray]) is not installed")
    audit = ["audit", str(run_dir), "--lira", "4", "--no-canary-audit", "--max-examples", "100"]
    code, out, err = run_cli([*audit, "--json"], capsys)
    assert code == 0, err
    here = json.loads(out)["lira"]
    code, out, err = run_cli([*audit, "--workers", "2", "--backend", "ray", "--json"], capsys)
    assert code == 0, err
    on_ray = json.loads(out)["lira"]
    assert (here.pop("workers"), here.pop("backend")) == (1, "processes")
    assert (on_ray.pop("workers"), on_ray.pop("backend")) == (2, "ray")
    assert on_ray == here
