"""Objective perturbation for regularised logistic regression (Chaudhuri et al. 2011, Alg. 2).

References: the paper's closed forms for ε' and Δ (hand-computed cases), the Gamma(d, 2/ε') law of
‖b‖ (KS tests), the first-order condition of the perturbed objective (b recovered from the
released weights), and the exact density ratio of the release on neighbouring datasets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from deniable.errors import DeniableError
from deniable.events import PureDpEvent
from deniable.mechanisms import RandomSource
from deniable.placements import (
    Guarantee,
    objective_noise_parameters,
    objective_perturbation,
    output_perturbation,
    perturbed_logistic_regression,
)
from deniable.placements.objective_perturbation import SMOOTHNESS, objective_noise

ALPHA = 1e-3  # each KS test below wrongly fails with probability 0.1 %
DIRECTION = np.array([1.0, -2.0, 0.5, 1.5, -1.0]) / math.sqrt(8.5)


def _separable(n: int, seed: int, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm records in R^5 labelled by a fixed hyperplane, those within ``margin`` dropped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIRECTION.size))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    score = x @ DIRECTION
    keep = np.abs(score) > margin
    return x[keep], (score[keep] > 0).astype(np.int64)


def _recovered_noise(w: np.ndarray, x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """b from the first-order condition Σ_i ∇ℓ_i(w) + reg·w + b = 0 (written out here)."""
    s = 2.0 * y - 1.0
    coef = -s / (1.0 + np.exp(s * (x @ w)))  # dℓ/d(wᵀx) for ℓ = log(1 + e^{−s·wᵀx})
    return -(x.T @ coef + reg * w)


# --- the parameters against Chaudhuri et al.'s Algorithm 2 ---------------------------------------


def test_parameters_match_the_closed_form_when_epsilon_prime_is_positive() -> None:
    # n = 100, the paper's Λ = 0.01: our total Λ = nΛ = 1. ε' = 1 − log(1 + 2c/(nΛ) + c²/(nΛ)²)
    # = 1 − log(1 + 0.5 + 0.0625) = 1 − 2·log(1.25) = 1 − 0.446287102628 = 0.553712897372
    p = objective_noise_parameters(1.0, 1.0)
    assert p.epsilon_prime == pytest.approx(0.553712897372, rel=1e-11)
    assert p.extra_regularization == 0.0
    assert p.noise_scale == pytest.approx(2 / 0.553712897372, rel=1e-11)
    assert SMOOTHNESS == 0.25
    # ε' + 2·log(1 + c/(Λ + Δ)) = ε: Theorem 9's accounting
    assert p.epsilon_prime + 2 * math.log1p(0.25 / 1.0) == pytest.approx(1.0, rel=1e-14)
    # add/remove: ε'/2 + log(1 + c/Λ) = ε/2
    assert p.add_remove_epsilon == pytest.approx(0.5, rel=1e-14)


def test_parameters_match_the_closed_form_when_delta_is_needed() -> None:
    # ε = 0.1, nΛ = 1: ε' = 0.1 − 0.4463 ≤ 0, so Δ_paper = c/(n(e^{ε/4} − 1)) − Λ and ε' = ε/2;
    # in total units nΔ_paper = 0.25/(e^{0.025} − 1) − 1 = 0.25/0.0253151205 − 1 = 8.87552083
    p = objective_noise_parameters(0.1, 1.0)
    assert p.epsilon_prime == 0.05
    assert p.extra_regularization == pytest.approx(8.87552083, rel=1e-8)
    n, lam_paper, eps = 100, 0.01, 0.1
    delta_paper = 0.25 / (n * (math.exp(eps / 4) - 1)) - lam_paper
    assert p.extra_regularization == pytest.approx(n * delta_paper, rel=1e-12)
    # then 2·log(1 + c/(Λ + Δ)) = ε/2 exactly, and ε' = ε/2: ε in all
    reg = p.total_regularization + p.extra_regularization
    assert 2 * math.log1p(0.25 / reg) == pytest.approx(eps / 2, rel=1e-12)
    assert p.add_remove_epsilon == pytest.approx(eps / 2, rel=1e-12)


def test_parameters_switch_exactly_where_epsilon_prime_reaches_zero() -> None:
    # ε' = 0 at Λ = c/(e^{ε/2} − 1); just above, no extra regulariser; at or below, Δ > 0
    eps = 0.8
    boundary = 0.25 / math.expm1(eps / 2)
    above = objective_noise_parameters(eps, boundary * (1 + 1e-6))
    below = objective_noise_parameters(eps, boundary * (1 - 1e-6))
    assert above.extra_regularization == 0.0 and 0 < above.epsilon_prime < 1e-5
    assert below.extra_regularization > 0 and below.epsilon_prime == eps / 2


# --- the noise ---------------------------------------------------------------------------------


def test_noise_norm_is_gamma_and_direction_uniform() -> None:
    dim, eps_prime = 4, 0.7
    src = RandomSource(0)
    draws = np.array([objective_noise(dim, eps_prime, src) for _ in range(2000)])
    norms = np.linalg.norm(draws, axis=1)
    gamma = stats.gamma(a=dim, scale=2 / eps_prime)
    assert stats.kstest(norms, gamma.cdf).pvalue > ALPHA
    # a uniform direction on the sphere in R^d: (u₁ + 1)/2 ~ Beta((d − 1)/2, (d − 1)/2)
    first = (draws[:, 0] / norms + 1) / 2
    assert stats.kstest(first, stats.beta((dim - 1) / 2, (dim - 1) / 2).cdf).pvalue > ALPHA


def test_released_minimiser_carries_gamma_noise() -> None:
    # b is recovered from each released model through the first-order condition: its norm must
    # follow Gamma(d, 2/ε') (and the solver's residual is negligible at this scale)
    x, y = _separable(60, 1)
    lam, eps = 2.0, 1.5
    p = objective_noise_parameters(eps, lam)
    norms = []
    for seed in range(300):
        release = objective_perturbation(
            x, y, num_classes=2, total_regularization=lam, epsilon=eps, rng=RandomSource(seed)
        )
        b = _recovered_noise(release.weights, x, y, lam + p.extra_regularization)
        norms.append(np.linalg.norm(b))
    gamma = stats.gamma(a=x.shape[1], scale=p.noise_scale)
    assert stats.kstest(norms, gamma.cdf).pvalue > ALPHA


def test_minimiser_solves_the_perturbed_objective() -> None:
    x, y = _separable(200, 2)
    lam, eps = 5.0, 0.5
    p = objective_noise_parameters(eps, lam)
    release = objective_perturbation(
        x, y, num_classes=2, total_regularization=lam, epsilon=eps, rng=RandomSource(7)
    )
    b = objective_noise(x.shape[1], p.epsilon_prime, RandomSource(7))  # the same draw
    reg = lam + p.extra_regularization
    w = release.weights
    # the gradient of Σℓ + (reg/2)‖w‖² + bᵀw, written out independently, vanishes at w
    grad = -_recovered_noise(w, x, y, reg) + b
    assert np.linalg.norm(grad) / len(y) <= 1e-7
    assert release.details["solver_gradient_norm"] <= 1e-7

    def objective(v: np.ndarray) -> float:
        margins = (2.0 * y - 1.0) * (x @ v)
        return float(np.logaddexp(0, -margins).sum() + 0.5 * reg * v @ v + b @ v)

    rng = np.random.default_rng(0)
    for _ in range(20):  # no nearby point does better
        assert objective(w) <= objective(w + 1e-3 * rng.normal(size=w.size))
    w_again, _ = perturbed_logistic_regression(x, y, b, reg)
    np.testing.assert_allclose(w_again, w, rtol=0, atol=1e-9)


def test_exact_density_ratio_on_neighbours_is_within_epsilon() -> None:
    # the release has density ν(b_D(w))·det ∇²G_D(w) (b ↦ w is a bijection); its log ratio on
    # neighbouring datasets, at any w, must be ≤ ε/2 for add/remove and ≤ ε for replace-one
    rng = np.random.default_rng(4)
    x, y = _separable(40, 3)
    lam, eps = 0.5, 1.0
    p = objective_noise_parameters(eps, lam)
    reg = lam + p.extra_regularization

    def log_density(w: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float:
        b = _recovered_noise(w, xs, ys, reg)
        margins = (2.0 * ys - 1.0) * (xs @ w)
        curvature = special.expit(margins) * special.expit(-margins)  # ℓ'' ≤ 1/4
        hessian = (xs * curvature[:, None]).T @ xs + reg * np.eye(xs.shape[1])
        return -0.5 * p.epsilon_prime * float(np.linalg.norm(b)) + np.linalg.slogdet(hessian)[1]

    worst_add = worst_replace = 0.0
    for _ in range(300):
        w = rng.normal(size=x.shape[1]) * rng.choice([0.1, 1.0, 10.0])
        z = rng.normal(size=x.shape[1])
        z /= np.linalg.norm(z)
        label = int(rng.integers(2))
        added = log_density(w, np.vstack([x, z]), np.append(y, label))
        here = log_density(w, x, y)
        replaced = log_density(w, np.vstack([x[1:], z]), np.append(y[1:], label))
        worst_add = max(worst_add, abs(added - here))
        worst_replace = max(worst_replace, abs(replaced - here))
    assert worst_add <= eps / 2 + 1e-12
    assert worst_replace <= eps + 1e-12
    assert worst_replace > 0.2 * eps  # the bound is not vacuous


# --- the release ---------------------------------------------------------------------------------


def test_release_states_its_event_and_claim() -> None:
    x, y = _separable(100, 5)
    release = objective_perturbation(
        x, y, num_classes=2, total_regularization=1.0, epsilon=2.0, rng=RandomSource(0)
    )
    assert release.event == PureDpEvent(epsilon=2.0)
    assert release.guarantee is Guarantee.CENTRAL_DP
    assert release.mechanism == "objective_perturbation"
    assert release.secure is False and release.weights.shape == (5,)
    claim = release.epsilon(1e-5)
    assert claim.guarantee is Guarantee.CENTRAL_DP and 0 < claim.epsilon <= 2.0 + 1e-9
    assert release.details["add_remove_epsilon"] == pytest.approx(1.0, rel=1e-12)
    default = objective_perturbation(x, y, num_classes=2, total_regularization=1.0, epsilon=2.0)
    assert default.secure is True


def test_one_vs_rest_splits_the_budget() -> None:
    rng = np.random.default_rng(6)
    centres = np.eye(5)[:3] * 0.8
    labels = rng.integers(3, size=600)
    x = centres[labels] + 0.05 * rng.normal(size=(600, 5))
    x /= np.maximum(1.0, np.linalg.norm(x, axis=1, keepdims=True))
    release = objective_perturbation(
        x, labels, num_classes=3, total_regularization=6.0, epsilon=9.0, rng=RandomSource(1)
    )
    assert release.weights.shape == (3, 5)
    assert release.details["epsilon_per_model"] == 3.0 and release.details["models"] == 3
    assert release.event == PureDpEvent(epsilon=9.0)
    assert (release.predict(x) == labels).mean() > 0.95


def test_utility_high_at_large_epsilon_and_above_output_perturbation() -> None:
    x, y = _separable(2000, 0)
    xt, yt = _separable(2000, 1)
    n = len(y)
    lam = 0.01  # output perturbation's mean-objective λ; the same model has total Λ = nλ
    accuracy = [
        (
            objective_perturbation(
                x,
                y,
                num_classes=2,
                total_regularization=n * lam,
                epsilon=5.0,
                rng=RandomSource(s),
            ).predict(xt)
            == yt
        ).mean()
        for s in range(5)
    ]
    assert np.mean(accuracy) > 0.98
    objective, output = [], []
    for s in range(20):  # ε = 0.3: measured means 0.995 against 0.923
        o = objective_perturbation(
            x, y, num_classes=2, total_regularization=n * lam, epsilon=0.3, rng=RandomSource(s)
        )
        u = output_perturbation(
            x, y, num_classes=2, regularization=lam, epsilon=0.3, rng=RandomSource(100 + s)
        )
        objective.append((o.predict(xt) == yt).mean())
        output.append((u.predict(xt) == yt).mean())
    assert np.mean(objective) > np.mean(output)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"total_regularization": 0.0}, "total_regularization"),
        ({"num_classes": 1}, "num_classes"),
        ({"features": np.full((10, 2), 0.8)}, "norm <= 1"),
        ({"labels": np.array([0, 1, 2, 0, 1, 0, 1, 0, 1, 0])}, "integers in 0..1"),
        ({"labels": np.linspace(0, 1, 10)}, "integers in 0..1"),
        ({"labels": np.zeros(9, dtype=np.int64)}, "10 integers"),
    ],
)
def test_bad_input_is_one_line(change: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "features": np.full((10, 2), 0.5),
        "labels": np.arange(10) % 2,
        "num_classes": 2,
        "total_regularization": 1.0,
        "epsilon": 1.0,
    }
    args.update(change)
    with pytest.raises(DeniableError, match=match) as info:
        objective_perturbation(**args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_records_on_the_sphere_up_to_rounding_are_accepted() -> None:
    x = np.array([[0.6, 0.8 + 1e-12], [1.0, 0.0], [0.0, -1.0]])
    release = objective_perturbation(
        x,
        np.array([1, 1, 0]),
        num_classes=2,
        total_regularization=1.0,
        epsilon=1.0,
        rng=RandomSource(0),
    )
    assert release.weights.shape == (2,)
