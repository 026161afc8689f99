"""Generalisation gap, Yeom et al.'s threshold attack, and the advantage bound of (ε, δ)-DP."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import DeniableError
from deniable.evaluate import (
    advantage_bound,
    generalisation,
    generalisation_report,
    threshold_attack,
)


def test_doctests() -> None:
    assert doctest.testmod(generalisation).failed == 0


@pytest.mark.parametrize(
    ("epsilon", "delta", "yeom", "tight"),
    [
        (0.0, 0.0, 0.0, 0.0),
        (math.log(3), 0.0, 1.0, 0.5),  # e^ε − 1 = 2 → capped; (3 − 1)/(3 + 1)
        (math.log(1.5), 0.0, 0.5, 0.2),  # 0.5; 0.5/2.5
        (math.log(1.5), 0.01, 0.51, 0.208),  # 0.5 + 0.01; (0.5 + 0.02)/2.5
        (10.0, 1e-5, 1.0, (math.e**10 - 1 + 2e-5) / (math.e**10 + 1)),
        (math.inf, 0.0, 1.0, 1.0),
    ],
)
def test_advantage_bound_hand_values(
    epsilon: float, delta: float, yeom: float, tight: float
) -> None:
    b = advantage_bound(epsilon, delta)
    assert b.yeom == pytest.approx(yeom, abs=1e-12)
    assert b.tight == pytest.approx(tight, abs=1e-12)
    assert b.tight <= b.yeom + 1e-15


def test_tight_bound_is_the_corner_of_the_dp_region() -> None:
    # brute force: max TPR − FPR over a grid of FPR with TPR ≤ e^ε FPR + δ and
    # 1 − FPR ≤ e^ε (1 − TPR) + δ (i.e. TPR ≤ 1 − (1 − FPR − δ)/e^ε)
    eps, delta = 0.8, 0.02
    fpr = np.linspace(0, 1, 200_001)
    tpr = np.minimum.reduce(
        [np.exp(eps) * fpr + delta, 1 - (1 - fpr - delta) / np.exp(eps), np.ones_like(fpr)]
    )
    assert advantage_bound(eps, delta).tight == pytest.approx(np.max(tpr - fpr), abs=1e-5)


def test_threshold_attack_hand_case_and_confidence_bound() -> None:
    members = [0.0, 0.1, 0.2, 0.3, 2.0]  # mean 0.52: four at or below
    nonmembers = [0.5, 0.6, 1.0, 3.0]  # one at or below
    a = threshold_attack(members, nonmembers, confidence=0.9)
    assert a.threshold == pytest.approx(0.52)
    assert (a.tpr, a.fpr, a.advantage) == (0.8, 0.25, pytest.approx(0.55))
    # Clopper–Pearson by its definition: P[Bin(n, p_lo) ≥ k] = α/2 and P[Bin(n, p_hi) ≤ k] = α/2
    p_lo = stats.beta.ppf(0.05, 4, 2)
    p_hi = stats.beta.isf(0.05, 2, 3)
    assert stats.binom.sf(3, 5, p_lo) == pytest.approx(0.05)
    assert stats.binom.cdf(1, 4, p_hi) == pytest.approx(0.05)
    assert a.advantage_lower == pytest.approx(p_lo - p_hi)
    assert threshold_attack(members, nonmembers, threshold=0.05).tpr == 0.2
    with pytest.raises(DeniableError, match="member_losses"):
        threshold_attack([], [1.0])


def test_overfit_model_has_gap_and_breaks_a_small_epsilon_bound() -> None:
    # random labels: a wide MLP memorises the training set; test accuracy stays at chance
    rng = np.random.default_rng(0)
    train = _data(rng.normal(size=(64, 10)), rng.integers(0, 2, 64))
    test = _data(rng.normal(size=(400, 10)), rng.integers(0, 2, 400))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 2))
    x, y = train.to_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = generalisation_report(model, train, test, epsilon=0.1, delta=1e-5)
    assert r.train_accuracy == 1.0
    assert abs(r.test_accuracy - 0.5) < 0.1
    assert r.accuracy_gap > 0.4 and r.loss_gap > 0.5
    assert r.attack.advantage > 0.2  # measured 0.36 (TPR 0.59, FPR 0.24)
    assert r.bound is not None and r.bound.tight < 0.05
    # even the 95 % lower confidence bound on the advantage exceeds what ε = 0.1 allows:
    # such a model cannot come from a (0.1, 1e-5)-DP training run
    assert r.attack.advantage_lower > r.bound.tight
    assert r.within_bound is False
    assert generalisation_report(model, train, test, epsilon=20.0).within_bound is True
    out = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert out["accuracy_gap"] == pytest.approx(r.accuracy_gap)
    assert generalisation_report(model, train, test).to_dict()["within_bound"] is None


def _data(x: np.ndarray, y: np.ndarray) -> ArrayDataset:
    return ArrayDataset(features=x.astype(np.float32), labels=y, num_classes=2, name="random")
