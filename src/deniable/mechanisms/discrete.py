"""Discrete Laplace and discrete Gaussian mechanisms for integer-valued queries (counts,
histograms): exact integer noise, integer output, no floating point anywhere.

Canonne, Kamath & Steinke (2020), "The Discrete Gaussian for Differential Privacy". The
discrete Laplace with scale b, P(z) ∝ exp(−|z|/b), on a query with L1 sensitivity Δ is ε-DP with
ε = Δ/b (Ghosh, Roughgarden & Sundararajan 2009). The discrete Gaussian N_Z(0, σ²) on a
query with L2 sensitivity Δ is (ε, δ)-DP with essentially the δ(ε) of the continuous Gaussian with
the same σ, and is ½(Δ/σ)²-concentrated DP (CKS 2020, §2).

Sensitivity: ``sensitivity`` is for add/remove-one neighbours; ``replace_one_sensitivity``
(optional) for replace-one (default 2Δ when accounted; a count has replace-one sensitivity 1).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import overload

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_positive
from deniable.events import DiscreteGaussianEvent, DiscreteLaplaceEvent
from deniable.mechanisms._inputs import IntValues, int_values, is_scalar, source
from deniable.mechanisms.calibration import laplace_scale
from deniable.mechanisms.exact_sampling import discrete_gaussian_sample, discrete_laplace_sample
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.release import Detail, Release


def _optional_positive(name: str, value: float | None) -> float | None:
    return None if value is None else check_positive(name, value)


def _integral(name: str, value: float) -> float:
    """A positive whole number (an L1 distance between integer vectors is one)."""
    if check_positive(name, value) != math.floor(value):
        raise InvalidParameterError(name, value, "a whole number >= 1 (integer queries)")
    return float(value)


@overload
def discrete_laplace(
    value: int,
    *,
    epsilon: float,
    sensitivity: float = 1.0,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[int]: ...


@overload
def discrete_laplace(
    value: IntValues,
    *,
    epsilon: float,
    sensitivity: float = 1.0,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.int64]]: ...


def discrete_laplace(
    value: int | IntValues,
    *,
    epsilon: float,
    sensitivity: float = 1.0,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[int] | Release[NDArray[np.int64]]:
    """Add exact discrete Laplace noise of scale b = Δ/ε to an integer (or each entry of an
    integer array); ε-DP for L1 sensitivity Δ (a whole number). Emits
    ``DiscreteLaplaceEvent(b, Δ)``."""
    eps = check_positive("epsilon", epsilon)
    sens = _integral("sensitivity", sensitivity)
    replace = (
        None
        if replace_one_sensitivity is None
        else _integral("replace_one_sensitivity", replace_one_sensitivity)
    )
    x = int_values("value", value)
    src = source(rng)
    scale = laplace_scale(epsilon=eps, sensitivity=sens)
    noise_scale = Fraction(scale)  # exactly the float recorded in the event
    out = [int(n) + discrete_laplace_sample(noise_scale, src) for n in x.ravel().tolist()]
    event = DiscreteLaplaceEvent(
        scale=scale, sensitivity=sens, replace_one_sensitivity=replace, dimension=int(x.size)
    )
    details: dict[str, Detail] = {
        "epsilon": eps,
        "epsilon_effective": sens / scale,
        "sensitivity": sens,
        "scale": scale,
        "dimension": int(x.size),
    }
    if is_scalar(value):
        return Release(out[0], event, src.is_secure, "discrete_laplace", details)
    arr = np.asarray(out, dtype=np.int64).reshape(x.shape)
    return Release(arr, event, src.is_secure, "discrete_laplace", details)


@overload
def discrete_gaussian(
    value: int,
    *,
    sigma: float,
    sensitivity: float = 1.0,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[int]: ...


@overload
def discrete_gaussian(
    value: IntValues,
    *,
    sigma: float,
    sensitivity: float = 1.0,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.int64]]: ...


def discrete_gaussian(
    value: int | IntValues,
    *,
    sigma: float,
    sensitivity: float = 1.0,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[int] | Release[NDArray[np.int64]]:
    """Add exact discrete Gaussian noise N_Z(0, σ²) to an integer (or each entry of an integer
    array) with L2 sensitivity Δ. Emits ``DiscreteGaussianEvent(σ, Δ)``. To target (ε, δ),
    take σ from :func:`~deniable.mechanisms.analytic_sigma` and check the event's ε with an
    accountant."""
    sig = check_positive("sigma", sigma)
    sens = check_positive("sensitivity", sensitivity)
    replace = _optional_positive("replace_one_sensitivity", replace_one_sensitivity)
    x = int_values("value", value)
    src = source(rng)
    noise_sigma = Fraction(sig)
    out = [int(n) + discrete_gaussian_sample(noise_sigma, src) for n in x.ravel().tolist()]
    event = DiscreteGaussianEvent(
        sigma=sig, sensitivity=sens, replace_one_sensitivity=replace, dimension=int(x.size)
    )
    details: dict[str, Detail] = {
        "sigma": sig,
        "sensitivity": sens,
        "noise_multiplier": sig / sens,
        "dimension": int(x.size),
    }
    if is_scalar(value):
        return Release(out[0], event, src.is_secure, "discrete_gaussian", details)
    arr = np.asarray(out, dtype=np.int64).reshape(x.shape)
    return Release(arr, event, src.is_secure, "discrete_gaussian", details)
