"""Private statistics: count, clamped sum, mean, and accuracy on a test set.

All use exact discrete Laplace noise (pure ε-DP; Canonne, Kamath & Steinke 2020) and return a
:class:`~deniable.mechanisms.Release` whose event describes exactly what was added, in the
units it was added in (integers for counts; grid units for sums, see
:mod:`deniable.mechanisms.grid`). Sums are computed exactly in integers: each clamped value is
rounded to the grid first, so no floating-point summation error can push the sensitivity past
what the event states (Casacuberta et al. 2022 show that it can for float sums).

Neighbouring relations (per function):

- count: add/remove-one, sensitivity 1; replace-one sensitivity 1 too (exact for a count of
  records meeting a condition; conservative for the size of the whole dataset, which does not
  change).
- sum with clamping to [lo, hi]: add/remove sensitivity max(|lo|, |hi|), replace-one hi − lo.
- mean: a noisy sum and a noisy count, ε split between them (two releases: a ComposedEvent);
  or, with a public count n, a noisy sum calibrated to replace-one (n fixed) divided by n.
- accuracy on m test examples: replace-one on the test set (m public); the fraction correct has
  sensitivity 1/m.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_count, check_positive
from deniable.events import ComposedEvent, DiscreteLaplaceEvent
from deniable.mechanisms._inputs import float_values, source
from deniable.mechanisms.exact_sampling import discrete_laplace_sample
from deniable.mechanisms.grid import Grid, grid_scale
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.release import Detail, Release

Values = Sequence[float] | NDArray[Any]


def _finite(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_bounds(lo: float, hi: float) -> tuple[float, float]:
    for name, bound in (("lo", lo), ("hi", hi)):
        if not _finite(bound):
            raise InvalidParameterError(name, bound, "a finite number")
    if not lo < hi:
        raise InvalidParameterError("lo", lo, f"< hi ({hi})")
    return float(lo), float(hi)


@dataclass(frozen=True)
class _GridSum:
    """A clamped sum in grid units, with its sensitivities in grid units."""

    grid: Grid
    total: int
    sensitivity: int  # add/remove: max |rounded bound|
    replace_one_sensitivity: int  # rounded hi − rounded lo (at least 1)
    count: int


def _grid_sum(values: Values, lo: float, hi: float, grid: Grid) -> _GridSum:
    x = float_values("values", values, allow_empty=True).ravel()
    # Clamp, scale by 2^-k and round half up: each step is monotone, so every rounded value lies
    # between the rounded bounds, which is what the sensitivities below rely on.
    rounded = np.floor(np.ldexp(np.clip(x, lo, hi), -grid.exponent) + 0.5)
    ends = np.floor(np.ldexp(np.array([lo, hi]), -grid.exponent) + 0.5)
    r_lo, r_hi = int(ends[0]), int(ends[1])
    largest = max(abs(r_lo), abs(r_hi))
    if largest * max(x.size, 1) < 2**62:
        total = int(rounded.astype(np.int64).sum())
    else:  # exact Python integers when int64 could overflow
        total = sum(int(v) for v in rounded.tolist())
    return _GridSum(grid, total, max(largest, 1), max(r_hi - r_lo, 1), int(x.size))


def _noisy_grid_sum(
    values: Values, lo: float, hi: float, scale: float, src: RandomSource
) -> tuple[float, DiscreteLaplaceEvent, dict[str, Detail]]:
    """Clamped sum + discrete Laplace noise of ``scale`` (value units), on a fine grid."""
    grid = Grid.for_noise(scale=scale, sensitivity=min(max(abs(lo), abs(hi)), hi - lo))
    gs = _grid_sum(values, lo, hi, grid)
    scale_units = grid_scale(grid, "scale", scale)
    noisy = gs.total + discrete_laplace_sample(Fraction(scale_units), src)
    event = DiscreteLaplaceEvent(
        scale=scale_units,
        sensitivity=float(gs.sensitivity),
        replace_one_sensitivity=float(gs.replace_one_sensitivity),
    )
    details: dict[str, Detail] = {
        "grid_width": grid.width,
        "scale": scale,
        "scale_grid_units": scale_units,
        "sensitivity_grid_units": gs.sensitivity,
        "replace_one_sensitivity_grid_units": gs.replace_one_sensitivity,
    }
    return grid.to_float(noisy), event, details


def _noisy_count(n: int, epsilon: float, src: RandomSource) -> tuple[int, DiscreteLaplaceEvent]:
    scale = check_positive("scale (1/epsilon)", 1.0 / epsilon)
    noisy = n + discrete_laplace_sample(Fraction(scale), src)
    return noisy, DiscreteLaplaceEvent(scale=scale, sensitivity=1.0, replace_one_sensitivity=1.0)


def private_count(
    values: Sized, *, epsilon: float, rng: RandomSource | None = None
) -> Release[int]:
    """len(values) + discrete Laplace noise of scale 1/ε: ε-DP (sensitivity 1).

    Pass the records to count (e.g. those meeting a condition). The result is an integer and
    may be negative; it is unbiased. Emits ``DiscreteLaplaceEvent(1/ε, sensitivity=1,
    replace_one_sensitivity=1)``.
    """
    eps = check_positive("epsilon", epsilon)
    if not isinstance(values, Sized) or isinstance(values, str | bytes):
        raise InvalidParameterError("values", type(values).__name__, "a sized collection")
    src = source(rng)
    noisy, event = _noisy_count(len(values), eps, src)
    details: dict[str, Detail] = {"epsilon": eps, "epsilon_effective": 1.0 / event.scale}
    return Release(noisy, event, src.is_secure, "private_count", details)


def private_sum(
    values: Values,
    *,
    lo: float,
    hi: float,
    epsilon: float,
    rng: RandomSource | None = None,
) -> Release[float]:
    """Σ clamp(v, lo, hi) + Laplace noise of scale max(|lo|, |hi|)/ε: ε-DP under add/remove-one.

    Sensitivities: add/remove max(|lo|, |hi|); replace-one hi − lo (stated on the event, in
    grid units). Noise is exact discrete Laplace on a 2^k grid; ``details["epsilon_effective"]``
    is the accounted ε under add/remove (slightly above ε, by the grid rounding). NaN or inf
    values are refused rather than clamped.
    """
    eps = check_positive("epsilon", epsilon)
    lo_f, hi_f = _check_bounds(lo, hi)
    src = source(rng)
    scale = check_positive("scale", max(abs(lo_f), abs(hi_f)) / eps)
    value, event, details = _noisy_grid_sum(values, lo_f, hi_f, scale, src)
    details = {
        "epsilon": eps,
        "epsilon_effective": event.sensitivity / event.scale,
        "sensitivity": max(abs(lo_f), abs(hi_f)),
        "replace_one_sensitivity": hi_f - lo_f,
        **details,
    }
    return Release(value, event, src.is_secure, "private_sum", details)


def private_mean(
    values: Values,
    *,
    lo: float,
    hi: float,
    epsilon: float,
    count_share: float = 0.5,
    rng: RandomSource | None = None,
) -> Release[float]:
    """Mean of values clamped to [lo, hi], as (noisy clamped sum)/(noisy count): ε-DP under
    add/remove-one (neither the data nor its size is public).

    ε is split: ``count_share``·ε for the count (sensitivity 1) and the rest for the sum
    (sensitivity max(|lo|, |hi|)). Emits ``ComposedEvent([sum_event, count_event])``. The
    noisy count is floored at 1 before dividing; the estimate is then consistent and its bias is
    negligible once n >> 1/(count_share·ε). It is not clamped to [lo, hi]. When n is public,
    :func:`private_mean_public_count` spends all of ε on the sum.
    """
    eps = check_positive("epsilon", epsilon)
    lo_f, hi_f = _check_bounds(lo, hi)
    if not (_finite(count_share) and 0 < count_share < 1):
        raise InvalidParameterError("count_share", count_share, "in the open interval (0, 1)")
    src = source(rng)
    eps_count = eps * count_share
    eps_sum = eps - eps_count
    scale = check_positive("scale", max(abs(lo_f), abs(hi_f)) / eps_sum)
    noisy_sum, sum_event, grid_details = _noisy_grid_sum(values, lo_f, hi_f, scale, src)
    n = len(float_values("values", values, allow_empty=True).ravel())
    noisy_count, count_event = _noisy_count(n, eps_count, src)
    details: dict[str, Detail] = {
        "epsilon": eps,
        "epsilon_sum": eps_sum,
        "epsilon_count": eps_count,
        "epsilon_effective": sum_event.sensitivity / sum_event.scale + 1.0 / count_event.scale,
        "noisy_sum": noisy_sum,
        "noisy_count": noisy_count,
        **grid_details,
    }
    value = noisy_sum / max(noisy_count, 1)
    event = ComposedEvent([sum_event, count_event])
    return Release(value, event, src.is_secure, "private_mean", details)


def private_mean_public_count(
    values: Values,
    *,
    lo: float,
    hi: float,
    epsilon: float,
    rng: RandomSource | None = None,
) -> Release[float]:
    """Mean of values clamped to [lo, hi] when the count n = len(values) is public.

    Neighbouring relation: replace-one (n fixed and public), under which the clamped mean has
    sensitivity (hi − lo)/n. The noise, discrete Laplace of scale (hi − lo)/ε on the clamped sum
    (grid units), is calibrated to that. Account the event with ``relation=REPLACE_ONE``: the
    release reveals n, so it is not private under add/remove-one, whatever an accountant says
    of the event's add/remove sensitivity (which describes the noisy sum alone).
    """
    eps = check_positive("epsilon", epsilon)
    lo_f, hi_f = _check_bounds(lo, hi)
    n = int(float_values("values", values, allow_empty=True).size)
    check_count("len(values)", n)
    src = source(rng)
    scale = check_positive("scale", (hi_f - lo_f) / eps)
    noisy_sum, event, grid_details = _noisy_grid_sum(values, lo_f, hi_f, scale, src)
    assert event.replace_one_sensitivity is not None
    details: dict[str, Detail] = {
        "epsilon": eps,
        "epsilon_effective": event.replace_one_sensitivity / event.scale,
        "relation": "replace_one",
        "count": n,
        "sensitivity": (hi_f - lo_f) / n,
        **grid_details,
    }
    return Release(noisy_sum / n, event, src.is_secure, "private_mean_public_count", details)


def private_accuracy(
    predictions: Sequence[object] | NDArray[Any],
    labels: Sequence[object] | NDArray[Any],
    *,
    epsilon: float,
    rng: RandomSource | None = None,
) -> Release[float]:
    """The fraction of the m test examples with predictions[i] == labels[i], ε-DP with respect to
    the test set.

    Neighbouring relation: replace-one on the test set (m is public), under which the fraction
    correct has sensitivity 1/m. Noise is exact discrete Laplace of scale 1/ε added to the
    integer count of correct predictions (sensitivity 1), then divided by m; i.e. noise of scale
    1/(mε) on the fraction. The event is stated in count units:
    ``DiscreteLaplaceEvent(scale=1/ε, sensitivity=1, replace_one_sensitivity=1)``. The estimate
    is unbiased and may fall outside [0, 1].
    """
    eps = check_positive("epsilon", epsilon)
    pred = np.asarray(predictions)
    true = np.asarray(labels)
    if true.ndim != 1 or true.size < 1:
        raise InvalidParameterError("labels", f"shape {true.shape}", "a 1-d array of m >= 1 labels")
    if pred.shape != true.shape:
        raise InvalidParameterError(
            "predictions", f"shape {pred.shape}", f"the labels' shape {true.shape}"
        )
    for name, arr in (("predictions", pred), ("labels", true)):
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise InvalidParameterError(name, "non-finite entries", "finite values (no NaN)")
    m = int(true.size)
    src = source(rng)
    correct = int(np.count_nonzero(pred == true))
    noisy, event = _noisy_count(correct, eps, src)
    details: dict[str, Detail] = {
        "epsilon": eps,
        "epsilon_effective": 1.0 / event.scale,
        "relation": "replace_one",
        "test_size": m,
        "sensitivity": 1.0 / m,
    }
    return Release(noisy / m, event, src.is_secure, "private_accuracy", details)
