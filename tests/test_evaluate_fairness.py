"""Fairness metrics against hand-computed cases, disparate impact, and the under-sampling helper."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
import torch
from torch import nn

from deniable.data import ArrayDataset, Split
from deniable.errors import DeniableError
from deniable.evaluate import (
    disparate_impact,
    fairness,
    fairness_report,
    group_counts,
    group_fairness,
    undersample_class,
    undersampled_split,
)


def test_doctests() -> None:
    assert doctest.testmod(fairness).failed == 0


def test_group_rates_match_hand_computed_case() -> None:
    # group a (code 0): y = 1 1 0 0 0, ŷ = 1 0 1 0 0 → acc 3/5, TPR 1/2, FPR 1/3, sel 2/5
    # group b (code 1): y = 1 1 1 0,   ŷ = 1 1 1 1   → acc 3/4, TPR 1,   FPR 1,   sel 1
    y = [1, 1, 0, 0, 0, 1, 1, 1, 0]
    yhat = [1, 0, 1, 0, 0, 1, 1, 1, 1]
    g = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    r = group_fairness(y, yhat, g, column="sex", group_names=["a", "b"], positive_label=1)
    a, b = r.group("a"), r.group("b")
    assert (a.n, a.accuracy, a.tpr, a.fpr, a.selection_rate) == (5, 3 / 5, 1 / 2, 1 / 3, 2 / 5)
    assert (b.n, b.accuracy, b.tpr, b.fpr, b.selection_rate) == (4, 3 / 4, 1.0, 1.0, 1.0)
    assert r.overall_accuracy == pytest.approx(6 / 9)
    assert r.gaps["accuracy"] == pytest.approx(3 / 4 - 3 / 5)
    assert r.gaps["tpr"] == pytest.approx(1 / 2)
    assert r.gaps["fpr"] == pytest.approx(2 / 3)
    assert r.gaps["selection_rate"] == pytest.approx(3 / 5)
    assert r.equalized_odds_difference == pytest.approx(2 / 3)
    assert r.selection_rate_ratio == pytest.approx(2 / 5)
    json.dumps(r.to_dict(), allow_nan=False)


def test_undefined_rates_are_none_and_multiclass_reports_accuracy_only() -> None:
    # group 1 has no positive example: TPR undefined there, so the TPR gap has one group only
    r = group_fairness([1, 0, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1], positive_label=1)
    assert r.group("1").tpr is None and r.gaps["tpr"] is None
    assert r.to_dict()["groups"][1]["tpr"] is None  # type: ignore[index]
    multi = group_fairness([0, 1, 2, 2], [0, 2, 2, 2], [0, 0, 1, 1])
    assert multi.group("0").accuracy == 0.5 and multi.group("1").accuracy == 1.0
    assert multi.group("0").tpr is None and multi.gaps["selection_rate"] is None
    assert multi.gaps["accuracy"] == 0.5


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(DeniableError, match="y_pred"):
        group_fairness([0, 1], [0], [0, 1])
    with pytest.raises(DeniableError, match="no name"):
        group_fairness([0, 1], [0, 1], [0, 2], group_names=["a", "b"])
    with pytest.raises(DeniableError, match="no group column"):
        fairness_report(nn.Flatten(), _adult_like(50, seed=0).test, "age")


def test_disparate_impact_hand_case() -> None:
    y = np.array([1, 0] * 10)
    groups = np.array([0] * 16 + [1] * 4)
    base_pred = y.copy()  # perfect
    priv_pred = y.copy()
    priv_pred[[0, 1]] = 1 - y[[0, 1]]  # group 0 loses 2/16
    priv_pred[[16, 17, 18]] = 1 - y[[16, 17, 18]]  # group 1 loses 3/4
    names = ["majority", "minority"]
    base = group_fairness(y, base_pred, groups, column="g", group_names=names, positive_label=1)
    priv = group_fairness(y, priv_pred, groups, column="g", group_names=names, positive_label=1)
    di = disparate_impact(base, priv, {"majority": 800, "minority": 50})
    assert di.underrepresented == "minority"
    assert di.underrepresented_drop == pytest.approx(3 / 4)
    assert di.others_drop == pytest.approx(2 / 16)
    assert di.drop_gap == pytest.approx(3 / 4 - 2 / 16)
    assert di.hurts_underrepresented_more
    assert di.size_drop_correlation is None  # two groups
    assert json.loads(json.dumps(di.to_dict(), allow_nan=False))["groups"][1][
        "drop"
    ] == pytest.approx(0.75)
    # without training counts, evaluation counts decide (4 < 16): same answer
    assert disparate_impact(base, priv).underrepresented == "minority"
    with pytest.raises(DeniableError, match="train_counts"):
        disparate_impact(base, priv, {"majority": 3})


def test_size_drop_correlation_is_spearman_over_groups() -> None:
    y = np.zeros(30, dtype=np.int64)
    groups = np.repeat([0, 1, 2], 10)
    priv = y.copy()
    priv[:1] = 1  # group 0 drops 0.1
    priv[10:13] = 1  # group 1 drops 0.3
    priv[20:26] = 1  # group 2 drops 0.6
    base_r = group_fairness(y, y, groups)
    priv_r = group_fairness(y, priv, groups)
    di = disparate_impact(base_r, priv_r, {"0": 1000, "1": 100, "2": 10})
    assert di.size_drop_correlation == pytest.approx(-1.0)
    assert di.underrepresented == "2" and di.hurts_underrepresented_more
    assert di.others_drop == pytest.approx(0.2)


def test_fairness_on_adult_like_data_with_groups() -> None:
    split = _adult_like(4000, seed=1)
    torch.manual_seed(0)
    model = _fit_logreg(split.train)
    report = fairness_report(model, split.test, "sex", positive_label=1)
    # brute force from the predictions
    x, y = split.test.to_tensors()
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    sex = split.test.groups["sex"]
    for code, name in enumerate(split.test.group_names["sex"]):
        m = sex == code
        g = report.group(name)
        assert g.n == int(m.sum())
        assert g.accuracy == pytest.approx(np.mean(pred[m] == y.numpy()[m]))
        pos = m & (y.numpy() == 1)
        assert g.tpr == pytest.approx(np.mean(pred[pos] == 1))
        assert g.selection_rate == pytest.approx(np.mean(pred[m] == 1))
    # the label rule differs by group, so one linear model fits the minority worse
    assert report.group("female").accuracy < report.group("male").accuracy
    assert report.gaps["accuracy"] is not None and report.gaps["accuracy"] > 0.02
    assert group_counts(split.train, "sex") == {
        "female": int((split.train.groups["sex"] == 0).sum()),
        "male": int((split.train.groups["sex"] == 1).sum()),
    }


def test_undersample_class_keeps_fraction_of_one_class_only() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [50, 40, 30, 20])
    data = ArrayDataset(
        features=rng.random((140, 1, 2, 2)).astype(np.float32),
        labels=labels,
        num_classes=4,
        name="toy",
        groups={"g": labels % 2},
        group_names={"g": ["even", "odd"]},
    )
    out = undersample_class(data, 1, 0.25, seed=3)
    counts = np.bincount(out.labels, minlength=4)
    assert counts.tolist() == [50, 10, 30, 20]
    kept_rows = {tuple(r.ravel()) for r in out.features[out.labels == 1]}
    all_rows = {tuple(r.ravel()) for r in data.features[data.labels == 1]}
    assert kept_rows <= all_rows and len(kept_rows) == 10
    assert out.groups["g"].tolist() == (out.labels % 2).tolist()  # groups follow their rows
    assert "under-sampled" in out.notes[-1]
    again = undersample_class(data, 1, 0.25, seed=3)
    assert np.array_equal(again.features, out.features)  # seeded
    assert np.bincount(undersample_class(data, 3, 0.001).labels)[3] == 1  # at least one kept
    split = undersampled_split(Split(train=data, test=data), 0, 0.5)
    assert np.bincount(split.train.labels)[0] == 25 and split.test is data
    with pytest.raises(DeniableError, match="fraction"):
        undersample_class(data, 1, 0.0)
    with pytest.raises(DeniableError, match="label"):
        undersample_class(data, 4, 0.5)


def _adult_like(n: int, seed: int) -> Split:
    """Tabular data with a sensitive ``sex`` column (25 % female) whose label rule differs."""
    rng = np.random.default_rng(seed)
    sex = (rng.random(n) > 0.25).astype(np.int64)  # 1 = male
    x = rng.normal(size=(n, 6)).astype(np.float32)
    score_m = x[:, 0] + 0.5 * x[:, 1]
    score_f = x[:, 0] - 1.0 * x[:, 2]
    logit = np.where(sex == 1, score_m, score_f) + 0.3 * rng.normal(size=n)
    y = (logit > 0).astype(np.int64)
    data = ArrayDataset(
        features=x,
        labels=y,
        num_classes=2,
        name="adult-like",
        groups={"sex": sex},
        group_names={"sex": ["female", "male"]},
    )
    cut = n * 3 // 4
    return Split(train=data.subset(np.arange(cut)), test=data.subset(np.arange(cut, n)))


def _fit_logreg(data: ArrayDataset, steps: int = 200) -> nn.Module:
    x, y = data.to_tensors()
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), data.num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_rates_and_gaps_agree_with_fairlearn() -> None:
    """fairlearn (a test-only reference) computes the same per-group accuracy, TPR, FPR and
    selection rate, and the same equalized-odds and demographic-parity differences, on random
    binary predictions over three groups (seeded)."""
    fairlearn_metrics = pytest.importorskip("fairlearn.metrics")
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    yhat = np.where(rng.random(600) < 0.7, y, 1 - y)
    g = rng.integers(0, 3, 600)
    ours = group_fairness(y, yhat, g, positive_label=1)
    frame = fairlearn_metrics.MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "tpr": fairlearn_metrics.true_positive_rate,
            "fpr": fairlearn_metrics.false_positive_rate,
            "selection_rate": fairlearn_metrics.selection_rate,
        },
        y_true=y,
        y_pred=yhat,
        sensitive_features=g,
    )
    for code in range(3):
        mine = ours.group(str(code))
        for rate in ("accuracy", "tpr", "fpr", "selection_rate"):
            assert mine.rate(rate) == pytest.approx(frame.by_group.loc[code, rate], abs=1e-12)
    eo = fairlearn_metrics.equalized_odds_difference(y, yhat, sensitive_features=g)
    dp = fairlearn_metrics.demographic_parity_difference(y, yhat, sensitive_features=g)
    assert ours.equalized_odds_difference == pytest.approx(eo, abs=1e-12)
    assert ours.gaps["selection_rate"] == pytest.approx(dp, abs=1e-12)
