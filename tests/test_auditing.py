"""The audit stage: canaries, their scores, and the one-run bound set beside the claimed ε."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from conftest import run_cli
from deniable.audit.canaries import (
    canary_scores,
    mislabelled_canaries,
    random_input_canaries,
    with_canaries,
)
from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.errors import InvalidParameterError


def test_canaries_are_included_by_fair_coins() -> None:
    canaries = random_input_canaries((1, 8, 8), 10, 4000, seed=0)
    assert canaries.features.shape == (4000, 1, 8, 8)
    assert canaries.labels.min() >= 0 and canaries.labels.max() < 10
    # Binomial test of the coin flips: false-failure rate 1e-3.
    assert stats.binomtest(int(canaries.included.sum()), 4000, 0.5).pvalue > 1e-3


def test_mislabelled_canaries_have_wrong_labels_and_are_appended_only_if_included() -> None:
    split = load_dataset("digits")
    canaries = mislabelled_canaries(split.test, 50, seed=1)
    assert canaries.labels.shape == (50,)
    merged = with_canaries(split.train, canaries)
    assert len(merged) == len(split.train) + int(canaries.included.sum())
    with pytest.raises(InvalidParameterError):
        mislabelled_canaries(split.test, len(split.test) + 1, seed=0)


def test_canary_scores_are_negative_cross_entropy() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    canaries = random_input_canaries((4,), 3, 10, seed=2)
    logits = model(torch.as_tensor(canaries.features))
    expected = -nn.functional.cross_entropy(
        logits, torch.as_tensor(canaries.labels), reduction="none"
    )
    np.testing.assert_allclose(canary_scores(model, canaries), expected.detach().numpy(), rtol=1e-6)


def test_run_audits_and_the_lower_bound_stays_below_the_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["run", "--quiet", "--json", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    result = json.loads(out)
    audit = result["audit"]
    lower = result["audit_epsilon_lower_bound"]
    assert lower == audit["private"]["bound"]["epsilon"]
    assert 0.0 <= lower <= result["epsilon"]
    # The same audit without DP finds leakage, so the attack has power on this data.
    assert audit["non_private"]["bound"]["epsilon"] > 0.5
    assert audit["confidence"] == 0.95
    assert 0.0 <= audit["loss_attack_on_reported_model"]["auc"] <= 1.0

    code, out, err = run_cli(["audit", result["run_dir"], "--json"], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["epsilon_lower_bound"] == pytest.approx(lower)


def test_audit_of_a_missing_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["audit", str(tmp_path)], capsys)
    assert code != 0 and "result.json" in err and len(err.strip().splitlines()) == 1


def test_training_config_round_trips() -> None:
    config = TrainConfig(audit_canaries=10)
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config


def test_audit_a_config_before_any_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`deniable audit --config`: the config's algorithm audited with canaries, writing nothing."""
    config = tmp_path / "train.toml"
    out_dir = tmp_path / "runs"
    config.write_text(f'model = "logreg"\nepochs = 4\ntarget_epsilon = 2.0\nout = "{out_dir}"\n')
    code, out, err = run_cli(
        ["audit", "--config", str(config), "--canaries", "300", "--json"], capsys
    )
    assert code == 0, err
    audit = json.loads(out)
    assert audit["private"]["canaries"] == 300
    assert audit["claimed_epsilon"] <= 2.0
    assert 0.0 <= audit["epsilon_lower_bound"] <= audit["claimed_epsilon"]
    # the f-DP analysis of the same guesses, reported beside (not instead of) the Steinke bound
    assert audit["private"]["bound_if_gaussian"]["method"] == "one-run-fdp"
    assert audit["non_private"]["bound"]["epsilon"] >= 0.0  # the same canaries, no DP
    assert 0.0 <= audit["loss_attack_on_reported_model"]["auc"] <= 1.0
    assert not out_dir.exists()  # nothing trained here is released or written
    code, out, err = run_cli(["audit", "--config", str(config)], capsys)
    assert code == 0 and "claimed ε = " in out and "the same audit finds" in out


@pytest.mark.parametrize("args", [["audit"], ["audit", "x", "--config", "y.toml"]])
def test_audit_needs_a_run_or_a_config(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(args, capsys)
    assert code != 0 and "--config" in err and len(err.strip().splitlines()) == 1
