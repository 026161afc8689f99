"""Private statistics: unbiasedness over many seeded draws, the sensitivities on the events, and
refusal of bad inputs.

Unbiasedness checks compare the mean error of R seeded draws with its standard error: |mean| <
5·SE fails a correct mechanism with probability ~6e-7 (normal approximation, R >= 1000).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from deniable.errors import DeniableError
from deniable.events import ComposedEvent, DiscreteLaplaceEvent
from deniable.mechanisms import (
    RandomSource,
    private_accuracy,
    private_count,
    private_mean,
    private_mean_public_count,
    private_sum,
)

R = 1500
DATA = np.random.default_rng(0).uniform(-1.0, 3.0, size=200)


def _assert_unbiased(errors: np.ndarray, slack: float = 0.0) -> None:
    se = errors.std(ddof=1) / math.sqrt(errors.size)
    assert abs(errors.mean()) < 5 * se + slack


def test_private_count_unbiased_and_event() -> None:
    rng = RandomSource(1)
    draws = np.array([private_count(range(50), epsilon=0.5, rng=rng).value for _ in range(R)])
    _assert_unbiased(draws - 50.0)
    a = math.exp(-0.5)  # discrete Laplace with scale 1/ε = 2: variance 2a/(1 − a)²
    assert draws.var() == pytest.approx(2 * a / (1 - a) ** 2, rel=0.15)
    rel = private_count([1, 2, 3], epsilon=0.5, rng=rng)
    assert isinstance(rel.value, int)
    assert rel.event == DiscreteLaplaceEvent(
        scale=2.0, sensitivity=1.0, replace_one_sensitivity=1.0
    )


def test_private_sum_unbiased_and_event() -> None:
    lo, hi = -2.0, 3.0  # DATA lies in [-1, 3]: no clamping bias
    rng = RandomSource(2)
    rel = private_sum(DATA, lo=lo, hi=hi, epsilon=1.0, rng=rng)
    g = float(rel.details["grid_width"])
    draws = np.array(
        [private_sum(DATA, lo=lo, hi=hi, epsilon=1.0, rng=rng).value for _ in range(R)]
    )
    # Each value is rounded to the grid (error <= g/2) before summing.
    _assert_unbiased(draws - DATA.sum(), slack=DATA.size * g / 2)
    event = rel.event
    assert isinstance(event, DiscreteLaplaceEvent)
    # lo and hi lie on the grid, so the sensitivities are exact: max(|lo|, |hi|) and hi − lo.
    assert event.sensitivity * g == 3.0
    assert event.replace_one_sensitivity is not None
    assert event.replace_one_sensitivity * g == 5.0
    assert event.scale * g == 3.0  # scale max(|lo|, |hi|)/ε
    assert rel.details["epsilon_effective"] == pytest.approx(1.0)


def test_private_sum_clamps() -> None:
    rel = private_sum([100.0, -100.0, 0.5], lo=0.0, hi=1.0, epsilon=1e6, rng=RandomSource(3))
    assert rel.value == pytest.approx(1.5, abs=1e-3)


def test_private_mean_unbiased_and_composed_event() -> None:
    rng = RandomSource(4)
    draws = np.array(
        [private_mean(DATA, lo=-1.0, hi=3.0, epsilon=1.0, rng=rng).value for _ in range(R)]
    )
    # Ratio estimator: its bias is O(Var(count)/n²) ≈ 2e-4 relative here, far below 5·SE.
    _assert_unbiased(draws - DATA.mean(), slack=1e-3)
    rel = private_mean(DATA, lo=-1.0, hi=3.0, epsilon=1.0, count_share=0.25, rng=rng)
    assert isinstance(rel.event, ComposedEvent)
    sum_event, count_event = rel.event.events
    assert isinstance(sum_event, DiscreteLaplaceEvent)
    assert isinstance(count_event, DiscreteLaplaceEvent)
    assert count_event.scale == 1 / 0.25 and count_event.sensitivity == 1.0
    g = float(rel.details["grid_width"])
    assert sum_event.sensitivity * g == 3.0 and sum_event.scale * g == 3.0 / 0.75
    assert rel.details["epsilon_effective"] == pytest.approx(1.0)


def test_private_mean_public_count() -> None:
    rng = RandomSource(5)
    draws = np.array(
        [
            private_mean_public_count(DATA, lo=-1.0, hi=3.0, epsilon=0.5, rng=rng).value
            for _ in range(R)
        ]
    )
    g = float(
        private_mean_public_count(DATA, lo=-1.0, hi=3.0, epsilon=0.5, rng=rng).details["grid_width"]
    )
    _assert_unbiased(draws - DATA.mean(), slack=g / 2)
    # Noise of scale (hi − lo)/(nε) on the mean: variance 2b² approximately.
    b = 4.0 / (DATA.size * 0.5)
    assert draws.var() == pytest.approx(2 * b * b, rel=0.15)
    rel = private_mean_public_count(DATA, lo=-1.0, hi=3.0, epsilon=0.5, rng=rng)
    assert rel.details["relation"] == "replace_one"
    assert isinstance(rel.event, DiscreteLaplaceEvent)
    assert rel.event.replace_one_sensitivity is not None
    assert rel.event.replace_one_sensitivity * g == 4.0  # hi − lo
    assert rel.event.scale * g == 8.0  # (hi − lo)/ε


def test_private_accuracy_unbiased_and_sensitivity() -> None:
    labels = np.arange(400) % 10
    predictions = labels.copy()
    predictions[:100] = (predictions[:100] + 1) % 10  # 75% correct
    rng = RandomSource(6)
    draws = np.array(
        [private_accuracy(predictions, labels, epsilon=0.2, rng=rng).value for _ in range(R)]
    )
    _assert_unbiased(draws - 0.75)
    rel = private_accuracy(predictions, labels, epsilon=0.2, rng=rng)
    assert rel.details["sensitivity"] == 1 / 400
    assert rel.details["relation"] == "replace_one"
    # Stated in count units: sensitivity 1 on the number correct, scale 1/ε.
    assert rel.event == DiscreteLaplaceEvent(
        scale=5.0, sensitivity=1.0, replace_one_sensitivity=1.0
    )


def test_statistics_against_basic_accountant() -> None:
    from deniable.accounting import epsilon as account

    rel = private_mean(DATA, lo=-1.0, hi=3.0, epsilon=1.0, rng=RandomSource(7))
    result = account(rel.event, 1e-6, accountant="basic")
    assert result.epsilon == pytest.approx(rel.details["epsilon_effective"], rel=1e-9)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: private_sum(DATA, lo=1.0, hi=0.0, epsilon=1.0), "lo"),
        (lambda: private_sum(DATA, lo=1.0, hi=1.0, epsilon=1.0), "lo"),
        (lambda: private_sum(DATA, lo=math.nan, hi=1.0, epsilon=1.0), "lo"),
        (lambda: private_sum(DATA, lo=0.0, hi=math.inf, epsilon=1.0), "hi"),
        (lambda: private_sum([1.0, math.nan], lo=0.0, hi=1.0, epsilon=1.0), "values"),
        (lambda: private_sum(["a"], lo=0.0, hi=1.0, epsilon=1.0), "values"),  # type: ignore[list-item]
        (lambda: private_sum(DATA, lo=0.0, hi=1.0, epsilon=0.0), "epsilon"),
        (lambda: private_mean([1.0, math.inf], lo=0.0, hi=1.0, epsilon=1.0), "values"),
        (lambda: private_mean(DATA, lo=0.0, hi=1.0, epsilon=1.0, count_share=1.0), "count_share"),
        (lambda: private_mean_public_count([], lo=0.0, hi=1.0, epsilon=1.0), "len(values)"),
        (lambda: private_accuracy([], [], epsilon=1.0), "labels"),
        (lambda: private_accuracy([1, 2], [1], epsilon=1.0), "predictions"),
        (lambda: private_accuracy([1.0, math.nan], [1.0, 2.0], epsilon=1.0), "predictions"),
        (lambda: private_accuracy([1], [1], epsilon=-1.0), "epsilon"),
        (lambda: private_count(5, epsilon=1.0), "values"),  # type: ignore[arg-type]
        (lambda: private_count([1], epsilon=math.nan), "epsilon"),
    ],
)
def test_bad_inputs_raise_named_errors(call: object, name: str) -> None:
    with pytest.raises(DeniableError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message
