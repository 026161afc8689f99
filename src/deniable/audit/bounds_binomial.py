"""Exact (Clopper–Pearson) binomial confidence bounds and the parameter checks of the bounds.

Clopper & Pearson 1934: with ``k`` successes in ``n`` independent trials of probability p,

    upper(k, n, α) = Beta⁻¹(1 − α; k + 1, n − k)     (1 when k = n)
    lower(k, n, α) = Beta⁻¹(α; k, n − k + 1)         (0 when k = 0)

satisfy P[p > upper] ≤ α and P[p < lower] ≤ α for every p (one-sided, exact, conservative).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from deniable.errors import InvalidParameterError, check_count


def check_confidence(confidence: float) -> float:
    """Check a confidence level in the open interval (0, 1)."""
    if not _finite(confidence) or not 0 < confidence < 1:
        raise InvalidParameterError("confidence", confidence, "in the open interval (0, 1)")
    return float(confidence)


def check_audit_delta(delta: float, *, allow_zero: bool = True) -> float:
    """Check δ in [0, 1) (or (0, 1) when ``allow_zero`` is False)."""
    ok = _finite(delta) and (0 <= delta < 1 if allow_zero else 0 < delta < 1)
    if not ok:
        allowed = "in [0, 1)" if allow_zero else "in the open interval (0, 1)"
        raise InvalidParameterError("delta", delta, allowed)
    return float(delta)


def _finite(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
    )


def cp_upper(k: ArrayLike, n: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """One-sided Clopper–Pearson upper bound on p at level 1 − ``alpha`` (vectorised)."""
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.broadcast_to(np.asarray(n, dtype=np.float64), k_arr.shape)
    out = np.ones(k_arr.shape, dtype=np.float64)
    inner = k_arr < n_arr
    out[inner] = stats.beta.isf(alpha, k_arr[inner] + 1, n_arr[inner] - k_arr[inner])
    return out


def cp_lower(k: ArrayLike, n: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """One-sided Clopper–Pearson lower bound on p at level 1 − ``alpha`` (vectorised)."""
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.broadcast_to(np.asarray(n, dtype=np.float64), k_arr.shape)
    out = np.zeros(k_arr.shape, dtype=np.float64)
    inner = k_arr > 0
    out[inner] = stats.beta.ppf(alpha, k_arr[inner], n_arr[inner] - k_arr[inner] + 1)
    return out


def clopper_pearson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Two-sided exact interval at ``confidence`` (α/2 in each tail), as scipy's binomtest."""
    n = check_count("trials", trials)
    k = check_count("successes", successes, minimum=0)
    if k > n:
        raise InvalidParameterError("successes", successes, f"an integer in [0, trials={n}]")
    alpha = 1 - check_confidence(confidence)
    return float(cp_lower(k, n, alpha / 2)), float(cp_upper(k, n, alpha / 2))
