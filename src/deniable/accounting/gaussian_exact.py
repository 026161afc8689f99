"""Exact (ε, δ) of the Gaussian mechanism without subsampling (Balle & Wang 2018).

For a query with L2 sensitivity Δ and noise N(0, σ²), let μ = Δ/σ. The mechanism is
(ε, δ)-DP exactly when

    δ ≥ Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ)                  (Balle & Wang 2018, Thm. 8)

T adaptive compositions of such mechanisms are exactly a Gaussian mechanism with
μ_T = μ·sqrt(T) (Dong, Roth & Su 2019, GDP composition), so this is also the exact answer for
composed Gaussians without subsampling. These functions are the analytic-Gaussian calibration of
the mechanisms and an oracle for the numerical accountants.
"""

from __future__ import annotations

import math

from scipy import optimize, special

from deniable.errors import check_delta, check_positive


def _log_ndtr(x: float) -> float:
    return float(special.log_ndtr(x))


def gaussian_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of the Gaussian mechanism with sensitivity/σ ratio ``mu`` (exact)."""
    check_positive("mu", mu)
    if epsilon < 0:
        raise ValueError("epsilon must be >= 0")
    a = _log_ndtr(mu / 2 - epsilon / mu)
    b = epsilon + _log_ndtr(-mu / 2 - epsilon / mu)
    # δ = e^a − e^b, computed stably; a ≥ b always holds for the Gaussian.
    if b >= a:
        return 0.0
    return float(math.exp(a) * -math.expm1(b - a))


def gaussian_epsilon(mu: float, delta: float) -> float:
    """Smallest ε ≥ 0 with δ(ε) ≤ ``delta`` for the Gaussian mechanism with ratio ``mu``."""
    check_positive("mu", mu)
    check_delta(delta)
    if gaussian_delta(mu, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_delta(mu, hi) > delta:
        hi *= 2
    return float(
        optimize.brentq(lambda e: gaussian_delta(mu, e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12)
    )


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest σ such that N(0, σ²) noise on an L2-sensitivity-Δ query is (ε, δ)-DP, for any
    ε > 0 (the analytic Gaussian mechanism, Balle & Wang 2018, Alg. 1, solved by root finding)."""
    check_positive("epsilon", epsilon)
    check_delta(delta)
    check_positive("sensitivity", sensitivity)
    lo, hi = 1e-3, 1.0
    while gaussian_delta(hi, epsilon) < delta:
        hi *= 2
    while gaussian_delta(lo, epsilon) > delta:
        lo /= 2
    mu = optimize.brentq(
        lambda m: gaussian_delta(m, epsilon) - delta, lo, hi, xtol=1e-14, rtol=1e-14
    )
    return float(sensitivity / mu)


def classic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """σ = Δ·sqrt(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Thm. A.1), valid only for ε < 1."""
    check_delta(delta)
    check_positive("sensitivity", sensitivity)
    if not 0 < epsilon < 1:
        raise ValueError(
            f"epsilon must be in (0, 1) for the classic Gaussian calibration, got {epsilon!r}; "
            "use the analytic Gaussian for larger epsilon"
        )
    return float(sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon)
