"""The exponential mechanism: choose a candidate with probability ∝ exp(ε·u_i/(2Δu)).

McSherry & Talwar (2007). ``utilities[i]`` is the score u(D, i) of candidate i; ``sensitivity``
is Δu = max over neighbouring D, D' and over i of |u(D, i) − u(D', i)|, for whichever
neighbouring relation the release will be accounted under (the event carries no separate
replace-one figure: pass the replace-one Δu when accounting replace-one). The choice is ε-DP
and the mechanism emits ``PureDpEvent(epsilon)``.

Sampling is exact, with no floating-point exponentials: propose i uniformly and accept with
probability exp(−γ_i), γ_i = ε(u_max − u_i)/(2Δu), computed as a rational from the float
inputs (Bernoulli(exp(−γ)) of Canonne, Kamath & Steinke 2020, Alg. 1). The accepted index has
probability exactly ∝ exp(ε·u_i/(2Δu)). Expected cost: n/Σ_i exp(−γ_i) <= n proposals, each O(1).
The number of proposals depends on the utilities, so it is not reported, and the running time
is a side channel: do not publish it.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_positive
from deniable.events import PureDpEvent
from deniable.mechanisms._inputs import float_values, source
from deniable.mechanisms.exact_sampling import bernoulli_exp
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.release import Detail, Release


def selection_probabilities(
    utilities: Sequence[float] | NDArray[Any], *, epsilon: float, sensitivity: float
) -> NDArray[np.float64]:
    """softmax(ε·u/(2Δu)): the exact distribution :func:`exponential` samples from (in floats)."""
    u = float_values("utilities", utilities)
    if u.ndim != 1:
        raise InvalidParameterError("utilities", f"an array of shape {u.shape}", "a 1-d array")
    logits = (
        check_positive("epsilon", epsilon) * u / (2.0 * check_positive("sensitivity", sensitivity))
    )
    weights = np.exp(logits - logits.max())
    return np.asarray(weights / weights.sum(), dtype=np.float64)


def exponential(
    utilities: Sequence[float] | NDArray[Any],
    *,
    epsilon: float,
    sensitivity: float,
    rng: RandomSource | None = None,
) -> Release[int]:
    """Return the index of the chosen candidate, chosen with probability ∝ exp(ε·u_i/(2Δu)).

    ``utilities`` is a non-empty 1-d sequence of finite floats (one per candidate);
    ``sensitivity`` is Δu. Emits ``PureDpEvent(epsilon)``. ``rng`` defaults to a fresh secure
    source.
    """
    eps = check_positive("epsilon", epsilon)
    sens = check_positive("sensitivity", sensitivity)
    u = float_values("utilities", utilities)
    if u.ndim != 1:
        raise InvalidParameterError("utilities", f"an array of shape {u.shape}", "a 1-d array")
    src = source(rng)
    factor = Fraction(eps) / (2 * Fraction(sens))
    best = Fraction(float(u.max()))
    gammas = [(best - Fraction(float(v))) * factor for v in u.tolist()]
    n = len(gammas)
    while True:
        i = src.randbelow(n)
        if bernoulli_exp(gammas[i], src):
            break
    details: dict[str, Detail] = {
        "epsilon": eps,
        "sensitivity": sens,
        "num_candidates": n,
    }
    return Release(i, PureDpEvent(epsilon=eps), src.is_secure, "exponential", details)
