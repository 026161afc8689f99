"""Poisoning: label flips and backdoors with k examples, success rates, and group privacy."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from deniable.config import TrainConfig
from deniable.data import ArrayDataset, load_digits
from deniable.errors import DeniableError
from deniable.evaluate import (
    PatchTrigger,
    assess_poisoning,
    attack_success_rate,
    backdoor,
    backdoor_success_rate,
    group_privacy,
    label_flip,
    label_flip_success_rate,
    poisoning,
    poisoning_vs_noise,
)
from deniable.events import Neighbouring


def test_doctests() -> None:
    assert doctest.testmod(poisoning).failed == 0


@pytest.mark.parametrize(
    ("epsilon", "delta", "k", "eps_k", "delta_k", "delta_sum"),
    [
        (1.0, 1e-5, 1, 1.0, 1e-5, 1e-5),
        (1.0, 1e-5, 3, 3.0, 3 * math.e**2 * 1e-5, (1 + math.e + math.e**2) * 1e-5),
        (
            0.5,
            1e-6,
            4,
            2.0,
            4 * math.e**1.5 * 1e-6,
            (1 + math.e**0.5 + math.e + math.e**1.5) * 1e-6,
        ),
        (0.0, 1e-5, 10, 0.0, 1e-4, 1e-4),
        (2.0, 0.0, 5, 10.0, 0.0, 0.0),
    ],
)
def test_group_privacy_hand_values(
    epsilon: float, delta: float, k: int, eps_k: float, delta_k: float, delta_sum: float
) -> None:
    g = group_privacy(epsilon, delta, k)
    assert g.epsilon_k == pytest.approx(eps_k)
    assert g.delta_k == pytest.approx(delta_k, rel=1e-12)
    assert g.delta_k_sum == pytest.approx(delta_sum, rel=1e-12)
    assert g.delta_k_sum <= g.delta_k * (1 + 1e-12)


def test_group_privacy_bounds_success_and_says_when_it_stops() -> None:
    small = group_privacy(0.1, 1e-5, 5)  # ε_k = 0.5
    assert small.success_bound(0.01) == pytest.approx(
        math.exp(0.5) * 0.01 + 5 * math.exp(0.4) * 1e-5
    )
    large = group_privacy(3.0, 1e-5, 30)
    assert large.success_bound(0.01) == 1.0
    assert group_privacy(1.0, 1e-5, 2000).delta_k == math.inf  # overflow is infinite, not an error
    with pytest.raises(DeniableError, match="k"):
        group_privacy(1.0, 1e-5, 0)


def test_label_flip_replaces_k_labels_and_counts_its_group_size() -> None:
    data = _toy(120)
    p = label_flip(data, 7, target=2, source=0, seed=1)
    changed = np.flatnonzero(p.data.labels != data.labels)
    assert changed.tolist() == p.poisoned.tolist() and p.k == 7
    assert (data.labels[changed] == 0).all() and (p.data.labels[changed] == 2).all()
    assert np.array_equal(p.data.features, data.features)
    assert p.group_size(Neighbouring.ADD_REMOVE) == 14  # remove the original, add the flip
    assert p.group_size(Neighbouring.REPLACE_ONE) == 7
    anyone = label_flip(data, 10, target=2, seed=1)
    assert (data.labels[anyone.poisoned] != 2).all()
    with pytest.raises(DeniableError, match="k"):
        label_flip(data, 1000, target=2)
    with pytest.raises(DeniableError, match="source"):
        label_flip(data, 3, target=2, source=2)


def test_backdoor_adds_k_triggered_copies() -> None:
    data = _toy(60)
    p = backdoor(data, 5, target=1, trigger=PatchTrigger(size=2, value=0.9), seed=0)
    assert len(p.data) == 65 and p.poisoned.tolist() == list(range(60, 65))
    assert np.array_equal(p.data.features[:60], data.features)  # clean examples untouched
    poison = p.data.features[60:]
    assert (poison[..., -2:, -2:] == np.float32(0.9)).all()
    assert (p.data.labels[60:] == 1).all()
    assert p.data.groups["g"].shape == (65,)
    assert p.group_size() == 5
    with pytest.raises(DeniableError, match="replace-one"):
        p.group_size(Neighbouring.REPLACE_ONE)
    with pytest.raises(DeniableError, match="patch"):
        PatchTrigger(size=9).apply(data.features)


def test_success_rates_on_hand_predictions() -> None:
    assert attack_success_rate(np.array([3, 3, 1, 3]), np.array([0, 1, 2, 3]), 3) == pytest.approx(
        2 / 3
    )
    with pytest.raises(DeniableError, match="target"):
        attack_success_rate(np.array([1]), np.array([1]), 1)


def test_backdoor_succeeds_on_a_non_private_model_trained_on_digits() -> None:
    split = load_digits(seed=0)
    trigger = PatchTrigger(size=3, value=1.0)
    clean = _fit(split.train)
    poisoned = backdoor(split.train, k=20, target=0, trigger=trigger, seed=0)  # 1.4 % of train
    model = _fit(poisoned.data)
    success = backdoor_success_rate(model, split.test, 0, trigger)
    clean_success = backdoor_success_rate(clean, split.test, 0, trigger)
    x, y = split.test.to_tensors()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    assert success >= 0.9  # measured 1.0
    assert clean_success <= 0.05  # measured 0.0
    assert accuracy >= 0.9  # the backdoor costs little clean accuracy (measured 0.953)
    assert label_flip_success_rate(clean, split.test, 7, source=1) <= 0.05
    # a model with ε = 1 per example: for k = 20 added examples ε_k = 20, the bound is vacuous
    weak = assess_poisoning(
        poisoned,
        epsilon=1.0,
        delta=1e-5,
        clean_success=clean_success,
        poisoned_success=success,
    )
    assert weak.group.epsilon_k == 20 and not weak.covered and weak.consistent
    # with ε = 0.01 per example, ε_k = 0.2: at most e^0.2 · clean + δ_k, far below this success
    strong = assess_poisoning(
        poisoned, epsilon=0.01, delta=1e-6, clean_success=0.01, poisoned_success=success
    )
    assert strong.covered and strong.bound < 0.02 and not strong.consistent
    assert json.loads(json.dumps(strong.to_dict(), allow_nan=False))["covered"] is True


def test_poisoning_vs_noise_trains_baseline_and_private_runs() -> None:
    split = load_digits(seed=0)
    trigger = PatchTrigger(size=3, value=1.0)
    poisoned = backdoor(split.train, k=20, target=0, trigger=trigger, seed=0)
    config = TrainConfig(
        model="mlp",
        epochs=2,
        batch_size=128,
        learning_rate=0.5,
        noise_multiplier=1.0,
        target_epsilon=None,
        seed=0,
    )
    rows = poisoning_vs_noise(
        split, poisoned, config, [2.0], lambda m: backdoor_success_rate(m, split.test, 0, trigger)
    )
    baseline, private = (json.loads(json.dumps(r.to_dict(), allow_nan=False)) for r in rows)
    assert baseline["noise_multiplier"] is None and baseline["epsilon"] is None
    assert baseline["covered"] is False and baseline["success_bound"] == 1.0
    assert private["noise_multiplier"] == 2.0
    assert 0.5 < private["epsilon"] < 2.0  # measured 1.00 (PLD, δ = 1e-5, 2 epochs at q ≈ 0.09)
    assert private["group_privacy"]["epsilon_k"] == pytest.approx(20 * private["epsilon"])
    assert private["relation"] == "add_remove" and private["k"] == 20
    for row in (baseline, private):
        assert 0 <= row["clean_success"] <= 1 and 0 <= row["poisoned_success"] <= 1
        assert row["clean_accuracy"] > 0.7  # measured 0.86 and 0.82
    with pytest.raises(DeniableError, match="noise multiplier"):
        poisoning_vs_noise(split, poisoned, config, [], lambda m: 0.0, include_baseline=False)


def _toy(n: int) -> ArrayDataset:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    return ArrayDataset(
        features=rng.random((n, 1, 4, 4)).astype(np.float32),
        labels=labels,
        num_classes=3,
        name="toy",
        groups={"g": labels % 2},
        group_names={"g": ["a", "b"]},
    )


def _fit(data: ArrayDataset, epochs: int = 15) -> nn.Module:
    torch.manual_seed(0)
    x, y = data.to_tensors()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    order = np.random.default_rng(0)
    for _ in range(epochs):
        perm = torch.as_tensor(order.permutation(len(y)))
        for start in range(0, len(y), 64):
            idx = perm[start : start + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_success_bound_with_a_huge_group_epsilon_does_not_overflow() -> None:
    """ε_k = 100·70 = 7000 (e^{ε_k} overflows a float): the bound is 1 for any positive clean
    rate and δ_k (capped at 1) for a clean rate of 0."""
    from deniable.evaluate.poisoning import group_privacy

    bound = group_privacy(70, 1e-5, 100)
    assert bound.success_bound(0.0) == min(1.0, bound.delta_k)
    assert bound.success_bound(1e-300) == 1.0
    assert bound.to_dict()["k"] == 100
