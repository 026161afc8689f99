"""Exact samplers (Canonne, Kamath & Steinke 2020, Algs. 1–3) against their exact PMFs.

Every statistical test uses a fixed seed, so the suite is deterministic; the stated level is the
false-failure rate the test would have with a fresh seed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from deniable.errors import DeniableError
from deniable.mechanisms import (
    RandomSource,
    bernoulli_exp,
    discrete_gaussian_sample,
    discrete_laplace_sample,
)

ALPHA = 1e-3  # per test: chi-square and binomial tests reject a correct sampler w.p. 1e-3


def chi_square_pvalue(samples: list[int], pmf: Callable[[int], float], half_width: int) -> float:
    """Chi-square goodness of fit of integer samples against ``pmf``, normalised by summing it
    over [−half_width, half_width]; bins with expected count < 5 are pooled into the two tails."""
    support = np.arange(-half_width, half_width + 1)
    weights = np.array([pmf(int(x)) for x in support])
    probs = weights / weights.sum()
    n = len(samples)
    expected = n * probs
    central = np.flatnonzero(expected >= 5)
    lo, hi = int(support[central[0]]), int(support[central[-1]])
    counts = Counter(samples)
    observed = [sum(c for x, c in counts.items() if x < lo)]
    expect = [float(expected[support < lo].sum())]
    for x in range(lo, hi + 1):
        observed.append(counts.get(x, 0))
        expect.append(float(expected[support == x][0]))
    observed.append(sum(c for x, c in counts.items() if x > hi))
    expect.append(float(expected[support > hi].sum()))
    obs_arr, exp_arr = np.array(observed, float), np.array(expect)
    keep = exp_arr > 0
    obs_arr, exp_arr = obs_arr[keep], exp_arr[keep]
    exp_arr *= obs_arr.sum() / exp_arr.sum()
    return float(stats.chisquare(obs_arr, exp_arr).pvalue)


@pytest.mark.parametrize(
    "gamma", [Fraction(0), Fraction(3, 10), Fraction(1), Fraction(3, 2), Fraction(17, 4)]
)
def test_bernoulli_exp_frequency(gamma: Fraction) -> None:
    rng = RandomSource(11)
    n = 40_000
    hits = sum(bernoulli_exp(gamma, rng) for _ in range(n))
    p = math.exp(-float(gamma))
    if gamma == 0:
        assert hits == n
        return
    # Two-sided exact binomial test at level ALPHA.
    assert stats.binomtest(hits, n, p).pvalue > ALPHA


@pytest.mark.parametrize("scale", [Fraction(1, 2), Fraction(1), Fraction(7, 3), Fraction(20)])
def test_discrete_laplace_matches_pmf(scale: Fraction) -> None:
    rng = RandomSource(5)
    samples = [discrete_laplace_sample(scale, rng) for _ in range(20_000)]
    t = float(scale)
    p = chi_square_pvalue(samples, lambda x: math.exp(-abs(x) / t), int(60 * t) + 20)
    assert p > ALPHA
    # The closed-form normaliser (1 − e^{−1/t})/(1 + e^{−1/t}) gives the same P(0).
    a = math.exp(-1 / t)
    assert samples.count(0) / len(samples) == pytest.approx((1 - a) / (1 + a), abs=0.02)


@pytest.mark.parametrize(
    "sigma", [Fraction(1, 2), Fraction(1), Fraction(17, 10), Fraction(20), Fraction(50, 3)]
)
def test_discrete_gaussian_matches_pmf(sigma: Fraction) -> None:
    rng = RandomSource(7)
    samples = [discrete_gaussian_sample(sigma, rng) for _ in range(20_000)]
    s2 = float(sigma) ** 2
    p = chi_square_pvalue(samples, lambda x: math.exp(-(x**2) / (2 * s2)), int(12 * sigma) + 10)
    assert p > ALPHA


def test_samplers_accept_only_exact_parameters() -> None:
    rng = RandomSource(0)
    with pytest.raises(DeniableError, match="gamma"):
        bernoulli_exp(Fraction(-1, 2), rng)
    with pytest.raises(DeniableError, match="gamma"):
        bernoulli_exp(0.5, rng)  # type: ignore[arg-type]
    with pytest.raises(DeniableError, match="scale"):
        discrete_laplace_sample(0, rng)
    with pytest.raises(DeniableError, match="sigma"):
        discrete_gaussian_sample(Fraction(-2), rng)
    assert isinstance(discrete_gaussian_sample(3, rng), int)


def test_huge_gamma_terminates_and_is_almost_never_true() -> None:
    rng = RandomSource(1)
    assert not any(bernoulli_exp(Fraction(10**12, 3), rng) for _ in range(1000))


def test_chi_square_check_has_power() -> None:
    """The goodness-of-fit check is not vacuous: a 5% error in the scale is rejected."""
    rng = RandomSource(5)
    samples = [discrete_laplace_sample(Fraction(21, 20), rng) for _ in range(20_000)]
    assert chi_square_pvalue(samples, lambda x: math.exp(-abs(x)), 80) < ALPHA
