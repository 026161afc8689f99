"""beyond_privacy_summary: per group when the data has groups, per class otherwise; JSON-ready."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from deniable.config import TrainConfig
from deniable.data import ArrayDataset, Split
from deniable.errors import DeniableError
from deniable.evaluate import beyond_privacy_summary, fairness_report, generalisation_report
from deniable.train.trainer import train_private


def _tabular(n: int, seed: int) -> Split:
    """Binary task with two sensitive columns: ``sex`` (25 % f) and ``race`` (3 groups)."""
    rng = np.random.default_rng(seed)
    sex = (rng.random(n) > 0.25).astype(np.int64)
    race = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = ((x[:, 0] + np.where(sex == 1, 0.5 * x[:, 1], -x[:, 2])) > 0).astype(np.int64)
    data = ArrayDataset(
        features=x,
        labels=y,
        num_classes=2,
        name="tabular",
        groups={"sex": sex, "race": race},
        group_names={"sex": ["female", "male"], "race": ["a", "b", "c"]},
    )
    cut = n * 3 // 4
    return Split(train=data.subset(np.arange(cut)), test=data.subset(np.arange(cut, n)))


def _fit(data: ArrayDataset, steps: int) -> nn.Module:
    torch.manual_seed(0)
    x, y = data.to_tensors()
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), data.num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_summary_with_groups_and_a_real_private_model() -> None:
    split = _tabular(2000, seed=0)
    config = TrainConfig(
        model="logreg",
        epochs=2,
        batch_size=128,
        noise_multiplier=1.0,
        target_epsilon=None,
        learning_rate=0.5,
        seed=0,
    )
    outcome = train_private(split, config)
    private = outcome.training.model
    epsilon = outcome.training.epsilon(config.delta).epsilon
    baseline = _fit(split.train, steps=150)
    out = beyond_privacy_summary(split, private, baseline, epsilon=epsilon, delta=config.delta)
    out = json.loads(json.dumps(out, allow_nan=False))  # JSON-ready
    assert out["grouping"] == "groups"
    assert set(out["fairness"]) == {"sex", "race"}
    sex = out["fairness"]["sex"]
    # the same numbers as the per-report functions give
    expected = fairness_report(private, split.test, "sex", positive_label=1).to_dict()
    assert sex["private"] == expected
    di = sex["disparate_impact"]
    assert di["underrepresented"] == "female"
    counts = {g["group"]: g["train_count"] for g in di["groups"]}
    assert counts == {
        "female": int((split.train.groups["sex"] == 0).sum()),
        "male": 1500 - counts["female"],
    }
    race = out["fairness"]["race"]["disparate_impact"]
    assert race["underrepresented"] == "c" and len(race["groups"]) == 3
    assert race["size_drop_correlation"] is None or -1 <= race["size_drop_correlation"] <= 1
    gen = out["generalisation"]["private"]
    report = generalisation_report(private, split.train, split.test, epsilon=epsilon, delta=1e-5)
    assert gen["test_accuracy"] == pytest.approx(report.test_accuracy)
    assert gen["test_accuracy"] == pytest.approx(outcome.test_accuracy)
    assert gen["advantage_bound"]["epsilon"] == pytest.approx(epsilon)
    assert out["generalisation"]["baseline"]["advantage_bound"] is None
    only_sex = beyond_privacy_summary(split, private, baseline, group_columns=["sex"])
    fairness = only_sex["fairness"]
    assert isinstance(fairness, dict) and set(fairness) == {"sex"}
    with pytest.raises(DeniableError, match="group column"):
        beyond_privacy_summary(split, private, baseline, group_columns=["age"])


def test_summary_without_groups_is_per_class() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    x = (rng.normal(size=(600, 1, 3, 3)) + y[:, None, None, None]).astype(np.float32)
    data = ArrayDataset(
        features=x, labels=y, num_classes=3, name="img", class_names=["a", "b", "c"]
    )
    split = Split(train=data.subset(np.arange(450)), test=data.subset(np.arange(450, 600)))
    good, weak = _fit(split.train, steps=100), _fit(split.train, steps=3)
    out = json.loads(json.dumps(beyond_privacy_summary(split, weak, good), allow_nan=False))
    assert out["grouping"] == "class"
    per_class = out["fairness"]["class"]
    assert [g["group"] for g in per_class["baseline"]["groups"]] == ["a", "b", "c"]
    assert per_class["baseline"]["positive_label"] is None
    assert per_class["baseline"]["groups"][0]["tpr"] is None  # multiclass: accuracy only
    with torch.no_grad():
        pred = good(torch.from_numpy(split.test.features)).argmax(1).numpy()
    for g, cls in zip(per_class["baseline"]["groups"], range(3), strict=True):
        mask = split.test.labels == cls
        assert g["accuracy"] == pytest.approx(np.mean(pred[mask] == cls))  # per-class recall
    train_counts = np.bincount(split.train.labels, minlength=3).tolist()
    assert [g["train_count"] for g in per_class["disparate_impact"]["groups"]] == train_counts
