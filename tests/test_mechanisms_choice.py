"""k-ary randomized response and the exponential mechanism: empirical distributions and the
empirical privacy loss against the stated ε.

Fixed seeds; each statistical check states its false-failure rate with a fresh seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from deniable.errors import DeniableError
from deniable.events import PureDpEvent, RandomizedResponseEvent
from deniable.mechanisms import (
    RandomSource,
    exponential,
    keep_probability,
    randomized_response,
    selection_probabilities,
)

ALPHA = 1e-3


@pytest.mark.parametrize(("epsilon", "k"), [(0.5, 2), (1.0, 3), (2.0, 5), (4.0, 10)])
def test_rr_keep_and_flip_probabilities(epsilon: float, k: int) -> None:
    n = 200_000
    values = np.arange(n) % k
    rel = randomized_response(values, epsilon=epsilon, num_buckets=k, rng=RandomSource(1))
    assert rel.event == RandomizedResponseEvent(epsilon=epsilon, num_buckets=k)
    out = rel.value
    assert out.dtype == np.int64 and out.shape == values.shape
    assert out.min() >= 0 and out.max() < k
    p = math.exp(epsilon) / (math.exp(epsilon) + k - 1)
    assert keep_probability(epsilon=epsilon, num_buckets=k) == pytest.approx(p, rel=1e-15)
    kept = int(np.count_nonzero(out == values))
    assert stats.binomtest(kept, n, p).pvalue > ALPHA  # exact binomial test, rate 1e-3
    if k == 2:
        return
    # The replacement is uniform over the k − 1 other values: chi-square at rate 1e-3.
    flipped = (out - values)[out != values] % k
    counts = np.bincount(flipped, minlength=k)[1:]
    assert stats.chisquare(counts).pvalue > ALPHA


def test_rr_empirical_privacy_loss_within_ci_of_epsilon() -> None:
    """log P(o | v)/P(o | w) estimated from samples is within its 99.99% CI of ε (rate 1e-4)."""
    epsilon, k, n = 1.0, 3, 200_000
    out_v = randomized_response(
        np.zeros(n, np.int64), epsilon=epsilon, num_buckets=k, rng=RandomSource(2)
    ).value
    out_w = randomized_response(
        np.ones(n, np.int64), epsilon=epsilon, num_buckets=k, rng=RandomSource(3)
    ).value
    z = stats.norm.isf(1e-4 / 2)
    losses = []
    for o in range(k):
        p_v, p_w = np.mean(out_v == o), np.mean(out_w == o)
        loss = math.log(p_v / p_w)
        # Delta method: Var(log p̂) ≈ (1 − p)/(n p).
        se = math.sqrt((1 - p_v) / (n * p_v) + (1 - p_w) / (n * p_w))
        losses.append((loss, se))
    loss0, se0 = losses[0]  # o = v: the largest loss, exactly ε in theory
    assert abs(loss0 - epsilon) < z * se0
    loss1, se1 = losses[1]  # o = w: exactly −ε
    assert abs(loss1 + epsilon) < z * se1
    loss2, se2 = losses[2]  # neither: 0
    assert abs(loss2) < z * se2


def test_rr_scalar_and_realised_epsilon() -> None:
    rel = randomized_response(2, epsilon=1.5, num_buckets=4, rng=RandomSource(4))
    assert isinstance(rel.value, int) and 0 <= rel.value < 4
    realised = rel.details["epsilon_realised"]
    assert isinstance(realised, float)
    assert 1.5 - 1e-12 < realised <= 1.5
    # Large ε: the keep probability rounds below 1, so the realised loss stays finite and <= ε.
    big = randomized_response(1, epsilon=80.0, num_buckets=2, rng=RandomSource(4))
    assert math.isfinite(float(big.details["epsilon_realised"]))
    assert float(big.details["epsilon_realised"]) <= 80.0
    # Tiny ε: no 64-bit threshold lies in [1/k, p]; the report is uniform (0-DP <= ε).
    tiny = randomized_response(1, epsilon=1e-25, num_buckets=3, rng=RandomSource(4))
    assert tiny.details["epsilon_realised"] == 0.0


@pytest.mark.parametrize(
    ("values", "kwargs", "name"),
    [
        ([0, 1, 2], {"epsilon": 1.0, "num_buckets": 1}, "num_buckets"),
        ([0, 1, 3], {"epsilon": 1.0, "num_buckets": 3}, "values"),
        ([-1], {"epsilon": 1.0, "num_buckets": 3}, "values"),
        ([0.0, 1.0], {"epsilon": 1.0, "num_buckets": 3}, "values"),
        ([0, 1], {"epsilon": 0.0, "num_buckets": 3}, "epsilon"),
        ([0, 1], {"epsilon": 1.0, "num_buckets": 2.0}, "num_buckets"),
        ([True], {"epsilon": 1.0, "num_buckets": 2}, "values"),
    ],
)
def test_rr_bad_inputs(values: list[object], kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(DeniableError, match=rf"^{name}"):
        randomized_response(values, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("utilities", "epsilon", "sensitivity"),
    [([0.0, 1.0, 2.0, 3.5, -1.0], 1.0, 1.0), ([10.0, 10.5, 9.0], 4.0, 0.5), ([0.3] * 4, 2.0, 1.0)],
)
def test_exponential_frequencies_match_softmax(
    utilities: list[float], epsilon: float, sensitivity: float
) -> None:
    rng = RandomSource(8)
    n = 20_000
    picks = [
        exponential(utilities, epsilon=epsilon, sensitivity=sensitivity, rng=rng).value
        for _ in range(n)
    ]
    probs = special.softmax(epsilon * np.array(utilities) / (2 * sensitivity))
    np.testing.assert_allclose(
        selection_probabilities(utilities, epsilon=epsilon, sensitivity=sensitivity),
        probs,
        rtol=1e-12,
    )
    counts = np.bincount(picks, minlength=len(utilities))
    assert stats.chisquare(counts, n * probs).pvalue > ALPHA  # chi-square, rate 1e-3


def test_exponential_release() -> None:
    rel = exponential([1.0, 2.0], epsilon=0.5, sensitivity=1.0, rng=RandomSource(1))
    assert rel.event == PureDpEvent(epsilon=0.5)
    assert rel.mechanism == "exponential" and rel.value in (0, 1) and not rel.secure
    # A dominant candidate is found quickly and (almost) always.
    picks = {
        exponential([0.0] * 50 + [1e4], epsilon=1.0, sensitivity=1.0, rng=RandomSource(i)).value
        for i in range(20)
    }
    assert picks == {50}


@pytest.mark.parametrize(
    ("utilities", "name"),
    [([], "utilities"), ([1.0, math.nan], "utilities"), ([[1.0, 2.0]], "utilities")],
)
def test_exponential_bad_inputs(utilities: list[float], name: str) -> None:
    with pytest.raises(DeniableError, match=rf"^{name}"):
        exponential(utilities, epsilon=1.0, sensitivity=1.0)
    with pytest.raises(DeniableError, match=r"^sensitivity"):
        exponential([1.0], epsilon=1.0, sensitivity=0.0)
