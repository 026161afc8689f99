"""Output perturbation for regularised logistic regression (Chaudhuri et al. 2011)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.data import load_digits
from deniable.events import GaussianEvent, Neighbouring, PureDpEvent
from deniable.mechanisms import RandomSource
from deniable.placements import (
    Guarantee,
    fit_logistic_regression,
    output_perturbation,
    output_perturbation_gaussian,
)
from deniable.placements.output_perturbation import minimiser_sensitivity

ALPHA = 1e-3  # each KS test below wrongly fails with probability 0.1 %


def _toy(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) / math.sqrt(d)
    y = (x @ np.arange(1, d + 1) + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return x, y


@pytest.mark.parametrize("num_classes", [2, 3])
def test_minimiser_moves_less_than_the_stated_sensitivity(num_classes: int) -> None:
    # brute force over neighbours: replace or remove single records, including adversarial ones
    x, y = _toy(60, 4, 0)
    y = y if num_classes == 2 else (np.arange(60) % 3).astype(np.int64)
    lam = 0.05
    sens = minimiser_sensitivity(60, num_classes, lam)
    w, _ = fit_logistic_regression(x, y, num_classes=num_classes, regularization=lam)
    worst_replace = worst_remove = 0.0
    for i in range(0, 60, 6):
        keep = np.arange(60) != i
        w_removed, _ = fit_logistic_regression(
            x[keep], y[keep], num_classes=num_classes, regularization=lam
        )
        worst_remove = max(worst_remove, float(np.linalg.norm(w_removed - w)))
        x_rep, y_rep = x.copy(), y.copy()
        x_rep[i] = -x[i] / np.linalg.norm(x[i])  # a unit-norm record pulling the other way
        y_rep[i] = (y[i] + 1) % num_classes
        w_replaced, _ = fit_logistic_regression(
            x_rep, y_rep, num_classes=num_classes, regularization=lam
        )
        worst_replace = max(worst_replace, float(np.linalg.norm(w_replaced - w)))
    assert 0 < worst_remove <= sens.add_remove
    assert 0 < worst_replace <= sens.replace_one
    assert sens.replace_one == pytest.approx(
        2 * sens.lipschitz / (60 * lam) + 2e-7 / lam, rel=1e-12
    )


def test_gaussian_output_perturbation_noise_scale_and_epsilon() -> None:
    split = load_digits(seed=0)
    lam, eps, delta = 0.1, 2.0, 1e-5
    x, y = split.train.features, split.train.labels
    release = output_perturbation_gaussian(
        x, y, num_classes=10, regularization=lam, epsilon=eps, delta=delta, rng=RandomSource(0)
    )
    w, _ = fit_logistic_regression(x, y, num_classes=10, regularization=lam)
    sigma = release.details["sigma"]
    assert isinstance(sigma, float)
    noise = (release.weights - w).ravel()  # 640 coordinates
    assert stats.kstest(noise, stats.norm(scale=sigma).cdf).pvalue > ALPHA
    sens = release.sensitivity
    assert sens.add_remove == pytest.approx(2 * math.sqrt(2) / (len(y) - 1) / lam + 2e-7 / lam)
    assert release.event == GaussianEvent(sigma, sens.add_remove, sens.replace_one)
    assert gaussian_epsilon(sens.add_remove / sigma, delta) == pytest.approx(eps, rel=1e-6)
    assert release.epsilon(delta).epsilon == pytest.approx(eps, abs=2e-3)
    # replace-one has the smaller sensitivity, so a smaller ε
    assert release.epsilon(delta, relation=Neighbouring.REPLACE_ONE).epsilon < eps
    assert release.guarantee is Guarantee.CENTRAL_DP
    assert float(np.mean(release.predict(split.test.features) == split.test.labels)) > 0.5


def test_pure_output_perturbation_noise_norm_is_gamma() -> None:
    # Chaudhuri et al. Alg. 1: density ∝ exp(−‖b‖/s), so ‖b‖ ~ Gamma(dim, s) and the direction
    # is uniform; checked over 200 releases of a small problem.
    x, y = _toy(80, 3, 1)
    lam, eps = 0.1, 1.0
    w, _ = fit_logistic_regression(x, y, num_classes=2, regularization=lam)
    rng = RandomSource(5)
    noise = np.stack(
        [
            output_perturbation(
                x, y, num_classes=2, regularization=lam, epsilon=eps, rng=rng
            ).weights
            - w
            for _ in range(200)
        ]
    )
    scale = minimiser_sensitivity(80, 2, lam).add_remove / eps
    norms = np.linalg.norm(noise, axis=1)
    assert stats.kstest(norms, stats.gamma(a=3, scale=scale).cdf).pvalue > ALPHA
    # uniform direction: each coordinate of b/‖b‖ on S² is uniform on [−1, 1] (Archimedes)
    directions = noise / norms[:, None]
    assert stats.kstest(directions[:, 0], stats.uniform(-1, 2).cdf).pvalue > ALPHA
    release = output_perturbation(x, y, num_classes=2, regularization=lam, epsilon=eps)
    assert release.event == PureDpEvent(eps)
    assert release.secure
    for relation in Neighbouring:
        claim = release.epsilon(1e-6, accountant="basic", relation=relation)
        assert claim.epsilon == pytest.approx(eps, rel=1e-12)
