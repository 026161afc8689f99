"""The Laplace mechanism: ε-DP release of real values with L1 sensitivity Δ (b = Δ/ε).

Dwork, McSherry, Nissim & Smith (2006). :func:`laplace` is safe against the floating-point
attack of Mironov (2012): it snaps the value to a power-of-two grid and adds exact discrete
Laplace noise in grid units (see :mod:`deniable.mechanisms.grid`), and emits the
:class:`~deniable.events.DiscreteLaplaceEvent` of what it did. :func:`laplace_unsafe_float` is
the textbook floating-point version for large vectors, emitting a continuous
:class:`~deniable.events.LaplaceEvent`; its low-order bits can leak the input.

Sensitivity: ``sensitivity`` bounds ‖f(D) − f(D')‖₁ for add/remove-one neighbours;
``replace_one_sensitivity`` (optional) bounds it for replace-one neighbours (default 2Δ when
accounted).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from deniable.errors import check_positive
from deniable.events import DiscreteLaplaceEvent, LaplaceEvent
from deniable.mechanisms._inputs import FloatValues, float_values, is_scalar, source
from deniable.mechanisms.calibration import laplace_scale
from deniable.mechanisms.exact_sampling import discrete_laplace_sample
from deniable.mechanisms.grid import Grid, grid_scale
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.release import Release


@overload
def laplace(
    value: float,
    *,
    epsilon: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float]: ...


@overload
def laplace(
    value: FloatValues,
    *,
    epsilon: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.float64]]: ...


def laplace(
    value: float | FloatValues,
    *,
    epsilon: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[float] | Release[NDArray[np.float64]]:
    """Release ``value`` (a float, or a small array: one exact draw per entry) with Laplace
    noise of scale b = Δ/ε, on a grid of width g = 2^k <= min(b, Δ)/1024.

    The event is ``DiscreteLaplaceEvent(scale=b/g, sensitivity=⌊Δ/g⌋ + d)`` for d entries, so
    the accounted ε (``details["epsilon_effective"]``) is at most (1 + d/1024)·ε. ``rng``
    defaults to a fresh secure source. A scalar gives ``Release[float]``, an array (any shape)
    ``Release[ndarray]`` of the same shape. Costs tens of microseconds per entry; for large
    vectors see :func:`laplace_unsafe_float` or use the Gaussian.
    """
    eps = check_positive("epsilon", epsilon)
    delta_f = check_positive("sensitivity", sensitivity)
    replace = (
        None
        if replace_one_sensitivity is None
        else check_positive("replace_one_sensitivity", replace_one_sensitivity)
    )
    x = float_values("value", value)
    src = source(rng)
    scale = laplace_scale(epsilon=eps, sensitivity=delta_f)
    smallest = delta_f if replace is None else min(delta_f, replace)
    grid = Grid.for_noise(scale=scale, sensitivity=smallest)
    dim = int(x.size)
    scale_units = grid_scale(grid, "scale", scale)
    sens_units = grid.l1_sensitivity(delta_f, dim)
    event = DiscreteLaplaceEvent(
        scale=scale_units,
        sensitivity=float(sens_units),
        replace_one_sensitivity=None
        if replace is None
        else float(grid.l1_sensitivity(replace, dim)),
        dimension=dim,
    )
    noise_scale = Fraction(scale_units)
    out = [
        grid.to_float(n + discrete_laplace_sample(noise_scale, src)) for n in grid.snap(x.ravel())
    ]
    details: dict[str, float | int | str] = {
        "epsilon": eps,
        "epsilon_effective": sens_units / scale_units,
        "sensitivity": delta_f,
        "scale": scale,
        "grid_width": grid.width,
        "sensitivity_grid_units": sens_units,
        "scale_grid_units": scale_units,
        "dimension": dim,
        "noise": "discrete Laplace on a 2^k grid (exact; Canonne, Kamath & Steinke 2020)",
    }
    if is_scalar(value):
        return Release(out[0], event, src.is_secure, "laplace", details)
    return Release(np.asarray(out).reshape(x.shape), event, src.is_secure, "laplace", details)


def laplace_unsafe_float(
    values: FloatValues,
    *,
    epsilon: float,
    sensitivity: float,
    replace_one_sensitivity: float | None = None,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.float64]]:
    """Add floating-point Laplace(Δ/ε) noise to every entry of ``values`` (vectorised).

    NOT safe against the floating-point attack of Mironov (2012): the low-order bits of the
    output depend on the input beyond what ε allows. Use it for large intermediate vectors that
    are never published bit-exactly; use :func:`laplace` for released values. Emits the
    continuous ``LaplaceEvent(scale=Δ/ε, sensitivity=Δ)``. Noise by inversion of the CDF from
    53-bit uniforms of ``rng`` (the OS CSPRNG in secure mode).
    """
    eps = check_positive("epsilon", epsilon)
    delta_f = check_positive("sensitivity", sensitivity)
    replace = (
        None
        if replace_one_sensitivity is None
        else check_positive("replace_one_sensitivity", replace_one_sensitivity)
    )
    x = float_values("values", values)
    src = source(rng)
    scale = laplace_scale(epsilon=eps, sensitivity=delta_f)
    # u = (2w + 1 − 2^53)/2^54 for 53-bit words w: exactly uniform on odd multiples of 2^-54
    # in (−1/2, 1/2), so the logarithm below is always finite.
    words = (src.uint64_array(int(x.size)) >> np.uint64(11)).astype(np.int64)
    u = (2 * words + 1 - 2**53).astype(np.float64) * 2.0**-54
    noise: NDArray[Any] = -scale * np.sign(u) * np.log1p(-2.0 * np.abs(u))
    event = LaplaceEvent(
        scale=scale,
        sensitivity=delta_f,
        replace_one_sensitivity=replace,
        dimension=int(x.size),
    )
    details: dict[str, float | int | str] = {
        "epsilon": eps,
        "epsilon_effective": delta_f / scale,
        "sensitivity": delta_f,
        "scale": scale,
        "dimension": int(x.size),
        "noise": "floating-point Laplace (unsafe: Mironov 2012)",
    }
    value = (x.ravel() + noise).reshape(x.shape)
    return Release(value, event, src.is_secure, "laplace_unsafe_float", details)
