"""The Gaussian mechanism: (ε, δ)-DP release of real values with L2 sensitivity Δ.

Three ways to choose σ, one function each:

- :func:`gaussian`: σ given (e.g. a noise multiplier times a clipping norm);
- :func:`analytic_gaussian`: the smallest σ for (ε, δ), any ε > 0 (Balle & Wang 2018);
- :func:`classic_gaussian`: σ = Δ·sqrt(2 ln(1.25/δ))/ε, valid only for ε < 1 (Dwork & Roth 2014,
  Thm. A.1); ε >= 1 is refused.

All three are safe against floating-point attacks (Mironov 2012): the value is snapped to a
power-of-two grid and exact discrete Gaussian noise (Canonne, Kamath & Steinke 2020) is added
in grid units (see :mod:`deniable.mechanisms.grid`); they emit the
:class:`~deniable.events.DiscreteGaussianEvent` of what was done. :func:`gaussian_unsafe_float`
is the vectorised floating-point version for large vectors (emits a continuous
:class:`~deniable.events.GaussianEvent`).

For d > 1 entries the event's sensitivity, Δ/g + √d grid units, is in general not a whole
number: an accountant that models the 1-d discrete Gaussian exactly (``pld``) may refuse it, while
``rdp`` and ``basic`` use its ½(Δ/σ)²-zCDP bound (Canonne, Kamath & Steinke 2020).

Sensitivity: ``sensitivity`` bounds ‖f(D) − f(D')‖₂ for add/remove-one neighbours;
``replace_one_sensitivity`` (optional) for replace-one neighbours (default 2Δ when accounted).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import overload

import numpy as np
from numpy.typing import NDArray

from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.errors import check_delta, check_positive
from deniable.events import DiscreteGaussianEvent, GaussianEvent
from deniable.mechanisms._inputs import FloatValues, float_values, is_scalar, source
from deniable.mechanisms.calibration import analytic_sigma, classic_sigma
from deniable.mechanisms.exact_sampling import discrete_gaussian_sample
from deniable.mechanisms.grid import Grid, grid_scale
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.release import Detail, Release


def _optional_positive(name: str, value: float | None) -> float | None:
    return None if value is None else check_positive(name, value)


def _on_grid(
    value: float | FloatValues,
    *,
    sigma: float,
    sensitivity: float,
    replace_one_sensitivity: float | None,
    rng: RandomSource | None,
    mechanism: str,
    delta: float | None,
    extra: dict[str, Detail],
) -> Release[float] | Release[NDArray[np.float64]]:
    x = float_values("value", value)
    src = source(rng)
    smallest = (
        sensitivity
        if replace_one_sensitivity is None
        else min(sensitivity, replace_one_sensitivity)
    )
    grid = Grid.for_noise(scale=sigma, sensitivity=smallest)
    dim = int(x.size)
    sigma_units = grid_scale(grid, "sigma", sigma)
    sens_units = grid.l2_sensitivity(sensitivity, dim)
    event = DiscreteGaussianEvent(
        sigma=sigma_units,
        sensitivity=sens_units,
        replace_one_sensitivity=None
        if replace_one_sensitivity is None
        else grid.l2_sensitivity(replace_one_sensitivity, dim),
        dimension=dim,
    )
    noise_sigma = Fraction(sigma_units)
    out = [
        grid.to_float(n + discrete_gaussian_sample(noise_sigma, src)) for n in grid.snap(x.ravel())
    ]
    details: dict[str, Detail] = {
        **extra,
        "sigma": sigma,
        "sensitivity": sensitivity,
        "noise_multiplier": sigma / sensitivity,
        "noise_multiplier_effective": sigma_units / sens_units,
        "grid_width": grid.width,
        "sensitivity_grid_units": sens_units,
        "sigma_grid_units": sigma_units,
        "dimension": dim,
        "noise": "discrete Gaussian on a 2^k grid (exact; Canonne, Kamath & Steinke 2020)",
    }
    if delta is not None:
        # ε at δ of a continuous Gaussian with the event's sensitivity/σ (Balle & Wang 2018,
        # Thm. 8); the discrete Gaussian's privacy is essentially the same (CKS 2020, §2).
        details["epsilon_effective"] = gaussian_epsilon(sens_units / sigma_units, delta)
    if is_scalar(value):
        return Release(out[0], event, src.is_secure, mechanism, details)
    return Release(np.asarray(out).reshape(x.shape), event, src.is_secure, mechanism, details)


@overload
def gaussian(
    value: float,
    *,
    sigma: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float]: ...


@overload
def gaussian(
    value: FloatValues,
    *,
    sigma: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.float64]]: ...


def gaussian(
    value: float | FloatValues,
    *,
    sigma: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float] | Release[NDArray[np.float64]]:
    """Release ``value`` with Gaussian noise of standard deviation ``sigma``, on a grid of width
    g = 2^k <= min(σ, Δ)/1024 with exact discrete Gaussian noise of σ/g grid units.

    The event is ``DiscreteGaussianEvent(sigma=σ/g, sensitivity=⌊Δ/g⌋ + 1)`` for a scalar, or
    sensitivity Δ/g + √d for d entries (``details["noise_multiplier_effective"]`` is the
    resulting σ/Δ, at most 1 + √d/1024 times below the nominal one). A scalar gives
    ``Release[float]``, an array ``Release[ndarray]`` of the same shape. ``rng`` defaults to a
    fresh secure source.
    """
    return _on_grid(
        value,
        sigma=check_positive("sigma", sigma),
        sensitivity=check_positive("sensitivity", sensitivity),
        replace_one_sensitivity=_optional_positive(
            "replace_one_sensitivity", replace_one_sensitivity
        ),
        rng=rng,
        mechanism="gaussian",
        delta=None,
        extra={},
    )


@overload
def analytic_gaussian(
    value: float,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float]: ...


@overload
def analytic_gaussian(
    value: FloatValues,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.float64]]: ...


def analytic_gaussian(
    value: float | FloatValues,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float] | Release[NDArray[np.float64]]:
    """(ε, δ)-DP release with the analytic Gaussian mechanism (Balle & Wang 2018), any ε > 0.

    σ is the smallest with δ >= Φ(Δ/2σ − εσ/Δ) − e^ε Φ(−Δ/2σ − εσ/Δ); the noise is then added
    as in :func:`gaussian`. ``details["epsilon_effective"]`` is the ε at δ after the grid's
    extra unit of sensitivity (slightly above ``epsilon``).
    """
    eps = check_positive("epsilon", epsilon)
    dlt = check_delta(delta)
    sens = check_positive("sensitivity", sensitivity)
    sigma = analytic_sigma(epsilon=eps, delta=dlt, sensitivity=sens)
    return _on_grid(
        value,
        sigma=sigma,
        sensitivity=sens,
        replace_one_sensitivity=_optional_positive(
            "replace_one_sensitivity", replace_one_sensitivity
        ),
        rng=rng,
        mechanism="analytic_gaussian",
        delta=dlt,
        extra={"epsilon": eps, "delta": dlt, "calibration": "analytic (Balle & Wang 2018)"},
    )


@overload
def classic_gaussian(
    value: float,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float]: ...


@overload
def classic_gaussian(
    value: FloatValues,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.float64]]: ...


def classic_gaussian(
    value: float | FloatValues,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float] | Release[NDArray[np.float64]]:
    """(ε, δ)-DP release with σ = Δ·sqrt(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Thm. A.1).

    The theorem needs ε < 1: larger ε raises :class:`InvalidParameterError` (use
    :func:`analytic_gaussian`, which also gives less noise). ``details["epsilon_effective"]``
    is the exact ε at δ of the noise actually added, usually well below ``epsilon`` since the
    classic bound is loose.
    """
    eps = check_positive("epsilon", epsilon)
    dlt = check_delta(delta)
    sens = check_positive("sensitivity", sensitivity)
    sigma = classic_sigma(epsilon=eps, delta=dlt, sensitivity=sens)
    return _on_grid(
        value,
        sigma=sigma,
        sensitivity=sens,
        replace_one_sensitivity=_optional_positive(
            "replace_one_sensitivity", replace_one_sensitivity
        ),
        rng=rng,
        mechanism="classic_gaussian",
        delta=dlt,
        extra={"epsilon": eps, "delta": dlt, "calibration": "classic (Dwork & Roth 2014)"},
    )


def gaussian_unsafe_float(
    values: FloatValues,
    *,
    sigma: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.float64]]:
    """Add floating-point N(0, σ²) noise to every entry of ``values`` (vectorised Box–Muller
    from 53-bit uniforms of ``rng``; the OS CSPRNG in secure mode).

    NOT safe against floating-point attacks (Mironov 2012): use it for large vectors such as
    noisy gradients, whose low-order bits are not published; use :func:`gaussian` for released
    values. Emits ``GaussianEvent(sigma, sensitivity)``.
    """
    sig = check_positive("sigma", sigma)
    sens = check_positive("sensitivity", sensitivity)
    replace = _optional_positive("replace_one_sensitivity", replace_one_sensitivity)
    x = float_values("values", values)
    src = source(rng)
    n = int(x.size)
    u1 = 1.0 - src.uniform_array(n)  # in (0, 1]: the logarithm is finite
    u2 = src.uniform_array(n)
    noise = sig * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    event = GaussianEvent(sigma=sig, sensitivity=sens, replace_one_sensitivity=replace)
    details: dict[str, Detail] = {
        "sigma": sig,
        "sensitivity": sens,
        "noise_multiplier": sig / sens,
        "dimension": n,
        "noise": "floating-point Gaussian (unsafe: Mironov 2012)",
    }
    value = (x.ravel() + noise).reshape(x.shape)
    return Release(value, event, src.is_secure, "gaussian_unsafe_float", details)
