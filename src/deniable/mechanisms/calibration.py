"""Noise scales for a target privacy level: the Laplace scale and the two Gaussian calibrations.

The Gaussian calibrations delegate to :mod:`deniable.accounting.gaussian_exact`; this module only
adds keyword-only signatures and typed errors.
"""

from __future__ import annotations

from deniable.accounting.gaussian_exact import analytic_gaussian_sigma, classic_gaussian_sigma
from deniable.errors import InvalidParameterError, check_delta, check_positive


def laplace_scale(*, epsilon: float, sensitivity: float) -> float:
    """b = Δ/ε: Laplace(b) noise on a query with L1 sensitivity Δ is ε-DP (Dwork et al. 2006)."""
    eps = check_positive("epsilon", epsilon)
    delta_f = check_positive("sensitivity", sensitivity)
    return check_positive("scale (sensitivity/epsilon)", delta_f / eps)


def classic_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """σ = Δ·sqrt(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Thm. A.1).

    The theorem holds only for ε < 1; larger ε is refused (use :func:`analytic_sigma`).
    """
    eps = check_positive("epsilon", epsilon)
    if eps >= 1:
        raise InvalidParameterError(
            "epsilon",
            epsilon,
            "< 1 for the classic Gaussian calibration (use the analytic Gaussian for larger ε)",
        )
    check_delta(delta)
    check_positive("sensitivity", sensitivity)
    return classic_gaussian_sigma(eps, delta, sensitivity)


def analytic_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """The smallest σ making N(0, σ²) noise on an L2-sensitivity-Δ query (ε, δ)-DP, any ε > 0.

    The analytic Gaussian mechanism of Balle & Wang (2018), solved exactly by root finding.
    """
    eps = check_positive("epsilon", epsilon)
    check_delta(delta)
    check_positive("sensitivity", sensitivity)
    return analytic_gaussian_sigma(eps, delta, sensitivity)
