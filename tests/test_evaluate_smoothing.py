"""Randomized smoothing against the closed form of a linear base classifier.

For ``f(x) = [w·x + b > 0]`` with ``‖w‖ = 1`` and noise ``N(0, σ²I)``, the top-class probability is
exactly ``p_A = Φ(d/σ)`` with ``d = |w·x + b|`` the distance to the decision boundary, so the
ideal certified radius ``σΦ⁻¹(p_A)`` is ``d``: CERTIFY must stay at or below it (except with
probability α) and approach it as ``n`` grows.
"""

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
    ABSTAIN,
    SmoothedClassifier,
    certified_radius,
    certify_dataset,
    smoothing,
)

W = torch.tensor([0.6, 0.8])  # unit norm
B = -0.2


def _linear() -> nn.Module:
    """Logits ``(0, w·x + b)``: class 1 exactly when ``w·x + b > 0``."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([torch.zeros(2), W]))
        model.bias.copy_(torch.tensor([0.0, B]))
    return model


def _at_distance(d: float) -> torch.Tensor:
    """A point whose signed distance to the boundary is ``d`` (class 1 side when d > 0)."""
    return W * (d - B)


def _floor(d: float, sigma: float, n: int, alpha: float) -> float:
    """The radius CERTIFY reports when the vote count sits at its 1e-6 quantile: it reports
    at least this except with probability 1e-6."""
    k_low = stats.binom.ppf(1e-6, n, stats.norm.cdf(d / sigma))
    return float(sigma * stats.norm.ppf(stats.beta.ppf(alpha, k_low, n - k_low + 1)))


def test_doctests() -> None:
    assert doctest.testmod(smoothing).failed == 0


def test_certified_radius_is_the_clopper_pearson_bound_through_the_normal_quantile() -> None:
    n, k, alpha, sigma = 500, 430, 0.01, 0.25
    p_lower, radius = certified_radius(k, n, sigma, alpha)
    # by definition of the one-sided exact bound: P[Bin(n, p_lower) >= k] = alpha
    assert stats.binom.sf(k - 1, n, p_lower) == pytest.approx(alpha, rel=1e-6)
    assert radius == pytest.approx(sigma * stats.norm.ppf(p_lower))
    assert certified_radius(260, 500, sigma, alpha) == (pytest.approx(0.467, abs=1e-3), 0.0)
    assert certified_radius(0, 10, 1.0, 0.1) == (0.0, 0.0)
    with pytest.raises(DeniableError, match="count"):
        certified_radius(11, 10, 1.0, 0.1)
    with pytest.raises(DeniableError, match="alpha"):
        certified_radius(5, 10, 1.0, 1.5)


def test_radius_approaches_the_true_radius_with_many_samples() -> None:
    sigma, d, n, alpha = 0.5, 0.3, 1_000_000, 0.001
    smoothed = SmoothedClassifier(_linear(), 2, sigma, batch_size=250_000)
    cert = smoothed.certify(_at_distance(d), n0=100, n=n, alpha=alpha, seed=0)
    assert cert.prediction == 1
    assert cert.radius <= d  # fails with probability <= alpha
    assert cert.radius >= _floor(d, sigma, n, alpha)
    assert d - cert.radius < 0.01  # measured: 0.2989 against the true radius 0.3


def test_radius_never_exceeds_the_true_radius_in_at_least_1_minus_alpha_of_repetitions() -> None:
    sigma, d, n, alpha, reps = 0.5, 0.3, 1000, 0.05, 1000
    p_a = stats.norm.cdf(d / sigma)
    # exact: P[R > d] = sum over vote counts k of P[Bin(n, p_A) = k] · [radius(k) > d] <= alpha
    k = np.arange(n + 1)
    over = np.array([certified_radius(int(i), n, sigma, alpha)[1] > d for i in k])
    p_over = float(stats.binom.pmf(k, n, p_a)[over].sum())
    assert p_over <= alpha  # 0.0451: Clopper–Pearson is conservative
    # Monte Carlo: the seeded repetitions exceed d at that rate; each side of this two-sided
    # binomial tolerance fails with probability <= 1e-4
    smoothed = SmoothedClassifier(_linear(), 2, sigma)
    generator = torch.Generator().manual_seed(2024)
    certs = [
        smoothed.certify(_at_distance(d), n0=50, n=n, alpha=alpha, seed=generator)
        for _ in range(reps)
    ]
    above = sum(c.radius > d for c in certs)
    assert all(c.prediction in (1, ABSTAIN) for c in certs)
    low, high = stats.binom.ppf([1e-4, 1 - 1e-4], reps, p_over)
    assert low <= above <= high


def test_abstains_on_the_decision_boundary_and_predict_agrees() -> None:
    smoothed = SmoothedClassifier(_linear(), 2, 0.5)
    on_boundary = smoothed.certify(_at_distance(0.0), n0=100, n=2000, alpha=0.001, seed=1)
    assert on_boundary.abstained and on_boundary.radius == 0.0
    assert smoothed.predict(_at_distance(0.0), n=2000, alpha=0.001, seed=1) == ABSTAIN
    assert smoothed.predict(_at_distance(0.5), n=2000, alpha=0.001, seed=1) == 1
    assert smoothed.predict(_at_distance(-0.5), n=2000, alpha=0.001, seed=1) == 0
    assert _linear().training  # base put back in its mode


def test_certify_dataset_reports_certified_accuracy() -> None:
    distances = np.array([1.0, 0.6, 0.2, -0.4, 0.0])
    points = np.stack([_at_distance(float(d)).numpy() for d in distances]).astype(np.float32)
    labels = np.array([1, 1, 1, 0, 1])
    data = ArrayDataset(features=points, labels=labels, num_classes=2, name="line")
    smoothed = SmoothedClassifier(_linear(), 2, 0.5)
    report = certify_dataset(smoothed, data, n0=100, n=20_000, alpha=0.001, seed=0)
    radii = [c.radius for c in report.certificates]
    # each radius is below its true distance and above its 1e-6-quantile floor
    for r, d in zip(radii[:4], np.abs(distances[:4]), strict=True):
        assert _floor(float(d), 0.5, 20_000, 0.001) <= r <= d
    assert report.certificates[4].abstained
    assert report.certified_accuracy(0.0) == pytest.approx(4 / 5)
    assert report.certified_accuracy(0.5) == pytest.approx(2 / 5)
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert out["abstain_rate"] == pytest.approx(0.2)
    assert math.isclose(out["certified_accuracy"]["1"], 0.0)  # radius < 1.0 even at d = 1.0


def test_noise_augmented_training_is_seeded_and_sees_the_noise() -> None:
    """The same seed gives the same weights; σ > 0 trains on other inputs than σ = 0."""
    from deniable.data import load_dataset
    from deniable.evaluate import train_noise_augmented
    from deniable.models import build_model

    data = load_dataset("digits").train

    def weights(sigma: float) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model("logreg", data.feature_shape, data.num_classes)
        trained = train_noise_augmented(model, data, sigma=sigma, epochs=2, learning_rate=0.1)
        assert not trained.training
        return torch.cat([p.detach().flatten() for p in trained.parameters()])

    assert torch.equal(weights(0.5), weights(0.5))
    assert not torch.allclose(weights(0.5), weights(0.0))
