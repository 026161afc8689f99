"""Laplace and Gaussian mechanisms: safe grid releases, their events, calibration, float paths.

Statistical tests use fixed seeds; KS tests run at α = 1e-3 (the false-failure rate with a fresh
seed). The grid makes the noise discrete with step g <= scale/1024, which moves the KS statistic
by at most ~1/1024, far below the KS critical value (~0.03 at n = 5000).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from deniable.accounting.gaussian_exact import gaussian_delta
from deniable.errors import DeniableError, InvalidParameterError
from deniable.events import (
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    GaussianEvent,
    LaplaceEvent,
)
from deniable.mechanisms import (
    GRID_BITS,
    RandomSource,
    analytic_gaussian,
    analytic_sigma,
    classic_gaussian,
    classic_sigma,
    discrete_gaussian,
    discrete_laplace,
    gaussian,
    gaussian_unsafe_float,
    laplace,
    laplace_scale,
    laplace_unsafe_float,
)

ALPHA = 1e-3
N = 5000


def _check_grid(width: float, scale: float, sensitivity: float) -> None:
    """g is a power of two with g <= min(scale, Δ)/1024 < 2g."""
    mantissa, _ = math.frexp(width)
    assert mantissa == 0.5
    bound = min(scale, sensitivity) / 2**GRID_BITS
    assert width <= bound < 2 * width


# ---- safe Laplace ------------------------------------------------------------------------------


@pytest.mark.parametrize(("epsilon", "sensitivity", "x"), [(0.5, 1.0, 3.3), (2.0, 3.0, -1e4)])
def test_laplace_noise_is_laplace(epsilon: float, sensitivity: float, x: float) -> None:
    rel = laplace(np.full(N, x), epsilon=epsilon, sensitivity=sensitivity, rng=RandomSource(1))
    b = sensitivity / epsilon
    assert stats.kstest(rel.value - x, "laplace", args=(0, b)).pvalue > ALPHA


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(1.0, 1.0), (0.3, 2.5), (7.0, 0.01)])
def test_laplace_scalar_event(epsilon: float, sensitivity: float) -> None:
    rel = laplace(0.25, epsilon=epsilon, sensitivity=sensitivity, rng=RandomSource(2))
    assert isinstance(rel.value, float)
    assert rel.mechanism == "laplace"
    event = rel.event
    assert isinstance(event, DiscreteLaplaceEvent)
    g = float(rel.details["grid_width"])
    b = sensitivity / epsilon
    _check_grid(g, b, sensitivity)
    assert event.scale * g == b  # the grid-unit scale is exact
    assert event.sensitivity == math.floor(sensitivity / g) + 1
    eps_eff = event.sensitivity / event.scale
    assert rel.details["epsilon_effective"] == eps_eff
    assert epsilon < eps_eff <= epsilon * (1 + 1 / 2**GRID_BITS) * (1 + 1e-12)
    assert (rel.value / g).is_integer()  # released on the grid


def test_laplace_vector_event_and_shape() -> None:
    x = np.arange(6.0).reshape(2, 3)
    rel = laplace(x, epsilon=1.0, sensitivity=2.0, replace_one_sensitivity=3.0, rng=RandomSource(3))
    assert rel.value.shape == (2, 3)
    g = float(rel.details["grid_width"])
    assert isinstance(rel.event, DiscreteLaplaceEvent)
    assert rel.event.sensitivity == math.floor(2.0 / g) + 6  # L1: one extra unit per entry
    assert rel.event.replace_one_sensitivity == math.floor(3.0 / g) + 6


def test_laplace_matches_basic_accountant() -> None:
    """The accountant's ε for the emitted event is the reported effective ε (slightly > ε)."""
    from deniable.accounting import epsilon as account

    rel = laplace(1.0, epsilon=0.7, sensitivity=1.0, rng=RandomSource(4))
    result = account(rel.event, 1e-6, accountant="basic")
    assert result.epsilon == pytest.approx(rel.details["epsilon_effective"], rel=1e-12)
    assert result.epsilon > 0.7


def test_release_ignores_bits_below_the_grid() -> None:
    """Mironov (2012): the output must not depend on the input's low-order bits. Two inputs that
    round to the same grid point give identical releases under the same seed."""
    a = laplace(1.0, epsilon=1.0, sensitivity=1.0, rng=RandomSource(9))
    b = laplace(1.0 + 1e-9, epsilon=1.0, sensitivity=1.0, rng=RandomSource(9))
    assert a.value == b.value
    c = gaussian(1.0, sigma=1.0, sensitivity=1.0, rng=RandomSource(9))
    d = gaussian(1.0 + 1e-9, sigma=1.0, sensitivity=1.0, rng=RandomSource(9))
    assert c.value == d.value


# ---- safe Gaussian -----------------------------------------------------------------------------


def test_analytic_gaussian_noise_is_gaussian() -> None:
    rel = analytic_gaussian(
        np.full(N, 2.0), epsilon=1.0, delta=1e-5, sensitivity=1.0, rng=RandomSource(5)
    )
    sigma = analytic_sigma(epsilon=1.0, delta=1e-5, sensitivity=1.0)
    assert rel.details["sigma"] == sigma
    assert stats.kstest(rel.value - 2.0, "norm", args=(0, sigma)).pvalue > ALPHA


def test_gaussian_small_sigma_noise_is_gaussian() -> None:
    rel = gaussian(np.full(N, -7.1), sigma=0.01, sensitivity=0.5, rng=RandomSource(6))
    assert stats.kstest(rel.value + 7.1, "norm", args=(0, 0.01)).pvalue > ALPHA


@pytest.mark.parametrize(("sigma", "sensitivity"), [(1.0, 1.0), (3.7, 0.2), (0.05, 10.0)])
def test_gaussian_scalar_event(sigma: float, sensitivity: float) -> None:
    rel = gaussian(5.0, sigma=sigma, sensitivity=sensitivity, rng=RandomSource(7))
    event = rel.event
    assert isinstance(event, DiscreteGaussianEvent)
    g = float(rel.details["grid_width"])
    _check_grid(g, sigma, sensitivity)
    assert event.sigma * g == sigma
    assert event.sensitivity == math.floor(sensitivity / g) + 1
    nominal, effective = rel.details["noise_multiplier"], rel.details["noise_multiplier_effective"]
    assert isinstance(nominal, float) and isinstance(effective, float)
    assert nominal / (1 + 1 / 2**GRID_BITS) <= effective * (1 + 1e-12)
    assert effective < nominal


def test_gaussian_vector_event() -> None:
    rel = gaussian(np.zeros(9), sigma=2.0, sensitivity=1.0, rng=RandomSource(8))
    g = float(rel.details["grid_width"])
    assert isinstance(rel.event, DiscreteGaussianEvent)
    assert rel.event.sensitivity >= 1.0 / g + 3.0  # L2: Δ/g + √d


def test_analytic_gaussian_reports_effective_epsilon() -> None:
    rel = analytic_gaussian(0.0, epsilon=2.0, delta=1e-6, sensitivity=1.0, rng=RandomSource(1))
    eps_eff = rel.details["epsilon_effective"]
    assert isinstance(eps_eff, float)
    assert 2.0 < eps_eff < 2.0 * (1 + 2 / 2**GRID_BITS)


# ---- calibration -------------------------------------------------------------------------------


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(0.1, 1.0), (1.0, 2.0), (8.0, 0.3)])
def test_laplace_scale(epsilon: float, sensitivity: float) -> None:
    assert laplace_scale(epsilon=epsilon, sensitivity=sensitivity) == sensitivity / epsilon


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(0.1, 1e-5), (1.0, 1e-6), (4.0, 1e-3), (20.0, 1e-9)]
)
def test_analytic_sigma_round_trip(epsilon: float, delta: float) -> None:
    sigma = analytic_sigma(epsilon=epsilon, delta=delta, sensitivity=2.0)
    assert gaussian_delta(2.0 / sigma, epsilon) == pytest.approx(delta, rel=1e-6)


def test_classic_sigma_formula_and_refusal() -> None:
    sigma = classic_sigma(epsilon=0.5, delta=1e-5, sensitivity=3.0)
    assert sigma == pytest.approx(3.0 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5)
    # The classic bound is valid but looser than the analytic one.
    assert analytic_sigma(epsilon=0.5, delta=1e-5, sensitivity=3.0) < sigma
    assert gaussian_delta(3.0 / sigma, 0.5) < 1e-5
    for eps in (1.0, 2.5):
        with pytest.raises(InvalidParameterError, match=r"epsilon.*< 1.*analytic"):
            classic_sigma(epsilon=eps, delta=1e-5, sensitivity=1.0)
        with pytest.raises(InvalidParameterError, match="epsilon"):
            classic_gaussian(0.0, epsilon=eps, delta=1e-5, sensitivity=1.0)
    rel = classic_gaussian(0.0, epsilon=0.5, delta=1e-5, sensitivity=3.0, rng=RandomSource(0))
    assert rel.details["sigma"] == sigma


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: laplace(1.0, epsilon=0.0, sensitivity=1.0), "epsilon"),
        (lambda: laplace(1.0, epsilon=1.0, sensitivity=-1.0), "sensitivity"),
        (lambda: laplace(float("nan"), epsilon=1.0, sensitivity=1.0), "value"),
        (lambda: laplace([], epsilon=1.0, sensitivity=1.0), "value"),
        (lambda: laplace(1.0, epsilon=math.inf, sensitivity=1.0), "epsilon"),
        (lambda: gaussian(1.0, sigma=0.0, sensitivity=1.0), "sigma"),
        (lambda: analytic_gaussian(1.0, epsilon=1.0, delta=1.0, sensitivity=1.0), "delta"),
        (lambda: analytic_gaussian(1.0, epsilon=1.0, delta=0.0, sensitivity=1.0), "delta"),
        (lambda: gaussian([1.0, math.inf], sigma=1.0, sensitivity=1.0), "value"),
        (lambda: laplace(1.0, epsilon=1.0, sensitivity=1.0, rng=3), "rng"),  # type: ignore[call-overload]
        (lambda: discrete_laplace(1.5, epsilon=1.0), "value"),  # type: ignore[call-overload]
        (lambda: discrete_laplace(1, epsilon=1.0, sensitivity=1.5), "sensitivity"),
        (lambda: laplace_unsafe_float([1.0], epsilon=-1.0, sensitivity=1.0), "epsilon"),
    ],
)
def test_bad_parameters_raise_named_errors(call: object, name: str) -> None:
    with pytest.raises(DeniableError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message


# ---- integer queries ---------------------------------------------------------------------------


def test_discrete_laplace_mechanism() -> None:
    rel = discrete_laplace(np.array([10, 20, 30]), epsilon=0.5, sensitivity=2, rng=RandomSource(1))
    assert rel.value.dtype == np.int64 and rel.value.shape == (3,)
    assert rel.event == DiscreteLaplaceEvent(scale=4.0, sensitivity=2.0, dimension=3)
    single = discrete_laplace(7, epsilon=1.0, rng=RandomSource(1))
    assert isinstance(single.value, int)


def test_discrete_gaussian_mechanism_noise() -> None:
    rel = discrete_gaussian(np.zeros(N, dtype=np.int64), sigma=3.0, rng=RandomSource(2))
    assert rel.event == DiscreteGaussianEvent(sigma=3.0, sensitivity=1.0, dimension=N)
    # Mean 0 and variance ≈ σ² (the discrete Gaussian's variance is within 1e-30 of σ² here).
    assert abs(rel.value.mean()) < 4 * 3.0 / math.sqrt(N)  # 4 standard errors: rate ~6e-5
    assert rel.value.var() == pytest.approx(9.0, rel=0.1)


# ---- floating-point paths ----------------------------------------------------------------------


def test_laplace_unsafe_float() -> None:
    x = np.linspace(-1, 1, N)
    rel = laplace_unsafe_float(x, epsilon=0.5, sensitivity=1.0, rng=RandomSource(3))
    assert rel.event == LaplaceEvent(scale=2.0, sensitivity=1.0, dimension=5000)
    assert rel.mechanism == "laplace_unsafe_float"
    assert np.all(np.isfinite(rel.value))
    assert stats.kstest(rel.value - x, "laplace", args=(0, 2.0)).pvalue > ALPHA


def test_gaussian_unsafe_float() -> None:
    x = np.zeros((50, 100))
    rel = gaussian_unsafe_float(x, sigma=1.5, sensitivity=1.0, rng=RandomSource(4))
    assert rel.event == GaussianEvent(sigma=1.5, sensitivity=1.0)
    assert rel.value.shape == (50, 100)
    assert stats.kstest(rel.value.ravel(), "norm", args=(0, 1.5)).pvalue > ALPHA
