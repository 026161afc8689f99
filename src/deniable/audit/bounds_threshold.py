"""ε lower bounds from a thresholded membership test: Clopper–Pearson and GDP routes.

Setting: each score comes from an independent run of the mechanism on D (a *member*, the target
present) or on its neighbour D' (a *non-member*, add/remove-one). A test "score ≥ t ⇒ member"
has false-positive rate FPR and false-negative rate FNR. If the mechanism is (ε, δ)-DP then
(Kairouz, Oh & Viswanath 2015) both

    1 − FNR ≤ e^ε · FPR + δ      and      1 − FPR ≤ e^ε · FNR + δ.

With one-sided Clopper–Pearson upper bounds FPR_ub, FNR_ub that hold together with probability
≥ confidence (α/2 each by a union bound; see :mod:`deniable.audit.bounds_strategies`),

    ε_lb = max(ln((1 − δ − FNR_ub)/FPR_ub), ln((1 − δ − FPR_ub)/FNR_ub), 0)

is a lower bound on the mechanism's ε at δ with that confidence (Jagielski et al. 2020, "Auditing
differentially private machine learning"; Nasr et al. 2021, "Adversary instantiation").

The GDP route (Nasr et al. 2023, "Tight auditing of differentially private machine learning")
reads the same bounds as μ_lb = Φ⁻¹(1 − FPR_ub) − Φ⁻¹(FNR_ub), a lower bound on μ *if* the
mechanism is μ-GDP (its trade-off curve Gaussian, as for the Gaussian mechanism and close to it for
DP-SGD over many steps), and converts μ_lb to ε at δ by the exact GDP relation
δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (Dong, Roth & Su 2019, Cor. 2.13). It is much tighter
from few samples, but only as valid as the Gaussian assumption: a mechanism with another
trade-off curve (e.g. randomized response) can get a GDP "bound" above its true ε.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.audit.bounds_binomial import check_audit_delta, check_confidence
from deniable.audit.bounds_result import LowerBound
from deniable.audit.bounds_strategies import (
    Array,
    BonferroniThresholds,
    Objective,
    ThresholdCandidates,
    ThresholdStrategy,
)
from deniable.audit.metrics import validate_scores
from deniable.errors import InvalidParameterError

DEFAULT_STRATEGY: ThresholdStrategy = BonferroniThresholds()


def clopper_pearson_lower_bound(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    strategy: ThresholdStrategy = DEFAULT_STRATEGY,
) -> LowerBound:
    """ε lower bound at ``delta`` from Clopper–Pearson bounds on FPR and FNR (module docstring).

    >>> rng = np.random.default_rng(0)
    >>> member = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    >>> scores = rng.normal(3.0 * member, 1.0)
    >>> lb = clopper_pearson_lower_bound(scores, member, delta=1e-5)
    >>> 0 < lb.epsilon < gaussian_epsilon(3.0, 1e-5)
    True
    """
    members, nonmembers, alpha, d = _inputs(scores, is_member, delta, confidence, strategy)
    cand = strategy.candidates(members, nonmembers, alpha, _cp_objective(d))
    forward = _log_ratio(1 - d - cand.fnr_upper, cand.fpr_upper)
    reverse = _log_ratio(1 - d - cand.fpr_upper, cand.fnr_upper)
    values = np.maximum(forward, reverse)
    i = int(np.argmax(values))
    epsilon = max(float(values[i]), 0.0)
    details = _details(cand, i, strategy)
    details["direction"] = "tpr/fpr" if forward[i] >= reverse[i] else "tnr/fnr"
    return _result(epsilon, d, confidence, "clopper-pearson", cand, i, details)


def gdp_lower_bound(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    strategy: ThresholdStrategy = DEFAULT_STRATEGY,
) -> LowerBound:
    """ε lower bound at ``delta`` through a GDP μ lower bound (module docstring), valid if the
    mechanism's trade-off curve is Gaussian. ``delta`` must be > 0 (μ-GDP is not ε-DP)."""
    if isinstance(delta, int | float) and delta == 0:
        raise InvalidParameterError("delta", delta, "in (0, 1) for the GDP route")
    members, nonmembers, alpha, d = _inputs(scores, is_member, delta, confidence, strategy)
    cand = strategy.candidates(members, nonmembers, alpha, _gdp_mu)
    mus = _gdp_mu(cand.fpr_upper, cand.fnr_upper)
    i = int(np.argmax(mus))
    mu = float(mus[i])
    epsilon = gaussian_epsilon(mu, d) if mu > 0 else 0.0
    details = _details(cand, i, strategy)
    details["mu_lower"] = max(mu, 0.0)
    details["assumption"] = "Gaussian trade-off curve (mu-GDP)"
    return _result(epsilon, d, confidence, "gdp", cand, i, details)


def _inputs(
    scores: ArrayLike,
    is_member: ArrayLike,
    delta: float,
    confidence: float,
    strategy: ThresholdStrategy,
) -> tuple[Array, Array, float, float]:
    c = check_confidence(confidence)
    d = check_audit_delta(delta)
    if not isinstance(strategy, ThresholdStrategy):
        raise InvalidParameterError(
            "strategy", strategy, "FixedThreshold, HeldOutThreshold or BonferroniThresholds"
        )
    s, m = validate_scores(scores, is_member)
    return s[m], s[~m], 1 - c, d


def _log_ratio(num: Array, den: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.clip(num, 0, None)) - np.log(den)
    return np.where(num > 0, out, -np.inf)


def _cp_objective(delta: float) -> Objective:
    def objective(fpr_upper: Array, fnr_upper: Array) -> Array:
        forward = _log_ratio(1 - delta - fnr_upper, fpr_upper)
        return np.maximum(forward, _log_ratio(1 - delta - fpr_upper, fnr_upper))

    return objective


def _gdp_mu(fpr_upper: Array, fnr_upper: Array) -> Array:
    """μ = Φ⁻¹(1 − FPR) − Φ⁻¹(FNR); symmetric in the two error rates."""
    mu = stats.norm.isf(fpr_upper) - stats.norm.ppf(fnr_upper)
    return np.where(np.isnan(mu), -np.inf, mu)


def _details(
    cand: ThresholdCandidates, i: int, strategy: ThresholdStrategy
) -> dict[str, float | int | str]:
    return {
        "strategy": strategy.describe(),
        "thresholds_tested": int(cand.thresholds.size),
        "per_test_alpha": cand.per_test_alpha,
        "n_members": cand.n_members,
        "n_nonmembers": cand.n_nonmembers,
        "false_positives": int(cand.false_positives[i]),
        "false_negatives": int(cand.false_negatives[i]),
        "fpr_upper": float(cand.fpr_upper[i]),
        "fnr_upper": float(cand.fnr_upper[i]),
    }


def _result(
    epsilon: float,
    delta: float,
    confidence: float,
    method: str,
    cand: ThresholdCandidates,
    i: int,
    details: dict[str, float | int | str],
) -> LowerBound:
    t = float(cand.thresholds[i])
    return LowerBound(
        epsilon=epsilon,
        delta=delta,
        confidence=float(confidence),
        method=method,
        threshold=t if epsilon > 0 and np.isfinite(t) else None,
        details=details,
    )
