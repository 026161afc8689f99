"""k-ary randomized response on categorical values (labels, answers, buckets).

Warner (1965); the k-ary form of Kairouz, Oh & Viswanath (2016): report the true value
v ∈ {0, ..., k−1} with probability p = e^ε/(e^ε + k − 1), else one of the other k − 1 values
uniformly. For any two inputs v, w and any output o, P(o | v)/P(o | w) <= e^ε: ε-DP with
respect to changing one individual's value (local DP; also label DP when applied to labels,
Ghazi et al. 2021). Each entry of an array is one individual's independent report.

Exactness: the keep decision compares a uniform 64-bit word with an integer threshold T, so the
realised keep probability is q = T/2^64, chosen with 1/k <= q <= p: the realised privacy loss
ln(q(k−1)/(1−q)) lies in [0, ε] (``details["epsilon_realised"]``), whatever the floating-point
error in computing p. The replacement value is exactly uniform (rejection sampling).
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_count, check_positive
from deniable.events import RandomizedResponseEvent
from deniable.mechanisms._inputs import IntValues, int_values, is_scalar, source
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.release import Detail, Release

_MAX_BUCKETS = 2**62


def keep_probability(*, epsilon: float, num_buckets: int) -> float:
    """p = e^ε/(e^ε + k − 1): the probability that k-ary randomized response keeps the value."""
    eps = check_positive("epsilon", epsilon)
    k = check_count("num_buckets", num_buckets, minimum=2)
    return 1.0 / (1.0 + (k - 1) * math.exp(-eps))


def _keep_threshold(epsilon: float, k: int) -> int | None:
    """T with 1/k <= T/2^64 <= e^ε/(e^ε + k − 1), or None when no such integer exists."""
    p = keep_probability(epsilon=epsilon, num_buckets=k)
    # p has relative error below 2^-50 (a few roundings); shrinking it by 2^-49 gives a lower bound.
    t_high = math.floor(math.ldexp(p * (1.0 - 2.0**-49), 64))
    t_low = -(-(2**64) // k)  # ⌈2^64/k⌉
    return t_high if t_high >= t_low else None


@overload
def randomized_response(
    values: int,
    *,
    epsilon: float,
    num_buckets: int,
    rng: RandomSource | None = None,
) -> Release[int]: ...


@overload
def randomized_response(
    values: IntValues,
    *,
    epsilon: float,
    num_buckets: int,
    rng: RandomSource | None = None,
) -> Release[NDArray[np.int64]]: ...


def randomized_response(
    values: int | IntValues,
    *,
    epsilon: float,
    num_buckets: int,
    rng: RandomSource | None = None,
) -> Release[int] | Release[NDArray[np.int64]]:
    """Each value in {0, ..., k−1} is kept with probability e^ε/(e^ε + k − 1), else replaced by
    one of the other k − 1 values uniformly (vectorised over arrays of any shape).

    Emits ``RandomizedResponseEvent(epsilon, num_buckets=k)``: ε-DP per individual, for the
    replace-one relation on that individual's value. An int gives ``Release[int]``, an array
    ``Release[ndarray]`` of the same shape. ``rng`` defaults to a fresh secure source.
    """
    eps = check_positive("epsilon", epsilon)
    k = check_count("num_buckets", num_buckets, minimum=2)
    if k > _MAX_BUCKETS:
        raise InvalidParameterError("num_buckets", num_buckets, "an integer in [2, 2**62]")
    x = int_values("values", values)
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= k:
        bad = lo if lo < 0 else hi
        raise InvalidParameterError("values", bad, f"in {{0, ..., {k - 1}}} (num_buckets={k})")
    src = source(rng)
    flat = x.ravel()
    n = int(flat.size)
    threshold = _keep_threshold(eps, k)
    if threshold is None:  # ε below float resolution: the uniform report (0-DP) is the closest
        out = src.integers_below_array(k, n)
        q, realised = 1.0 / k, 0.0
    else:
        keep = src.uint64_array(n) < np.uint64(threshold)
        other = src.integers_below_array(k - 1, n)
        other = other + (other >= flat)  # uniform over {0, ..., k−1} \ {value}
        out = np.where(keep, flat, other)
        q = math.ldexp(threshold, -64)
        realised = math.log(threshold * (k - 1) / (2**64 - threshold))  # ln(q(k−1)/(1−q))
    details: dict[str, Detail] = {
        "epsilon": eps,
        "num_buckets": k,
        "keep_probability": q,
        "epsilon_realised": realised,
        "count": n,
    }
    event = RandomizedResponseEvent(epsilon=eps, num_buckets=k)
    if is_scalar(values):
        return Release(int(out[0]), event, src.is_secure, "randomized_response", details)
    arr = out.astype(np.int64).reshape(x.shape)
    return Release(arr, event, src.is_secure, "randomized_response", details)
