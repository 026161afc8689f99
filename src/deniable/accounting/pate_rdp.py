"""Data-dependent Rényi DP of the PATE aggregators (Papernot et al. 2017, 2018). No torch here.

The data-independent cost of PATE needs no code of its own: each aggregator query is an event
(:mod:`deniable.placements.pate.aggregators`) that the ordinary accountants interpret. This module
computes the *data-dependent* bound, which is much smaller when the teachers agree, from the
teachers' vote histograms.

Neighbouring relation: add/remove one privacy unit, which lives in exactly one teacher's partition,
so at most one teacher's vote changes: one count goes down by 1 and another up by 1. (Replace-one
may change two teachers; the bounds below are not stated for it.)

Definitions (Papernot, Song, Mironov, Raghunathan, Talwar & Erlingsson 2018, "Scalable private
learning with PATE", ICLR; Appendix A):

- Data-dependent RDP at D: ε(λ) with D_λ(M(D) ‖ M(D')) ≤ ε(λ) for every neighbour D' of D. It
  depends on the private votes, so **the ε it gives is itself private information and must not be
  published as it is**: Papernot et al. release it through the smooth-sensitivity mechanism
  (their Appendix B: Gaussian noise scaled by the smooth sensitivity of the cost, whose own RDP
  is added). Results here carry ``publishable=False``: their ε is for analysis only. Publish the
  data-independent ε, or release the data-dependent one through
  :func:`deniable.placements.pate.smooth_sensitivity.publish_data_dependent_rdp`.
- GNMax with noise σ on the histogram is λ/σ²-RDP for every λ (data-independent; Prop. 8: the
  Gaussian mechanism with L2 sensitivity √2 gives λ·2/(2σ²)).
- Prop. 7: q = Pr[GNMax(D) ≠ argmax] ≤ q̃ = Σ_{i≠i*} Pr[N(0, 2σ²) ≥ n_{i*} − n_i] (a union
  bound), capped at (k − 1)/k.
- Thm. 6: if M is (μ₁, ε₁)- and (μ₂, ε₂)-RDP and Pr[M(D) ≠ i*] ≤ q̃ with
  q̃ ≤ e^{(μ₂−1)ε₂}/(μ₁/(μ₁−1) · μ₂/(μ₂−1))^{μ₂}, then for λ ≤ μ₁
  D_λ(M(D)‖M(D')) ≤ log((1−q̃)·A^{λ−1} + q̃·B^{λ−1})/(λ−1) with
  A = (1−q̃)/(1 − (q̃e^{ε₂})^{(μ₂−1)/μ₂}) and B = e^{ε₁}/q̃^{1/(μ₁−1)}.
  Prop. 10 picks μ₂ = σ·sqrt(log(1/q̃)), μ₁ = μ₂ + 1 (for ε(μ) = μ/σ²).
- The threshold check of Confident-GNMax releases one bit, [max_j n_j + N(0, σ₁²) ≥ T]; max_j n_j
  has sensitivity 1, so it is λ/(2σ₁²)-RDP, i.e. the form λ/σ'² with σ' = √2·σ₁, and Thm. 6 applies
  with q̃ = min(Pr[answered], Pr[not answered]) (as in the authors' reference code,
  tensorflow/privacy ``research/pate_2018/core.py``, ``compute_rdp_threshold``).
- LNMax with Laplace(b) noise is 2/b-DP (Papernot et al. 2017, "Semi-supervised knowledge
  transfer...", ICLR: a vote change moves the histogram by 2 in L1). Its data-dependent bound is
  their Thm. 3 with q̃ from their Lemma 4, Pr[n_j + Lap ≥ n_{i*} + Lap] ≤ (2 + g)/(4e^{g}),
  g = (n_{i*} − n_j)/b, each capped by the pure-DP curves min(λε²/2, ε) (Bun & Steinke 2016).

Confident-GNMax: the realised path is accounted (the threshold cost of every query plus the GNMax
cost of the answered ones), as in Papernot et al. 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from deniable.accounting.rdp import DEFAULT_ORDERS, Orders, rdp_to_epsilon
from deniable.accounting.result import EpsilonResult
from deniable.errors import InvalidParameterError, check_delta, check_positive
from deniable.events import Neighbouring

NOT_PUBLISHABLE = (
    "data-dependent: this epsilon is a function of the private teacher votes and is not "
    "differentially private itself; not for publication: publish the data-independent epsilon, or "
    "release this one with the smooth-sensitivity mechanism (Papernot et al. 2018, Appendix B: "
    "deniable.placements.pate.smooth_sensitivity.publish_data_dependent_rdp)"
)


@dataclass(frozen=True, eq=False)
class DataDependentRdp:
    """A data-dependent RDP curve of PATE queries on the actual votes, with its
    data-independent counterpart for comparison.

    ``rdp[i]`` bounds D_λ(M(D)‖M(D')) at ``orders[i]`` for the realised D only (Papernot et al.
    2018, Def. 5); ``publishable`` is always False for the raw curve.
    """

    orders: NDArray[np.float64]
    rdp: NDArray[np.float64]
    data_independent_rdp: NDArray[np.float64]
    queries: int
    mechanism: str
    publishable: bool = False
    note: str = NOT_PUBLISHABLE
    per_query: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))

    def epsilon(self, delta: float) -> EpsilonResult:
        """(ε, δ) at D from the data-dependent curve (RDP conversion of
        :func:`deniable.accounting.rdp.rdp_to_epsilon`). Not for publication."""
        check_delta(delta)
        eps, order = rdp_to_epsilon(self.orders, self.rdp, delta)
        ind, ind_order = rdp_to_epsilon(self.orders, self.data_independent_rdp, delta)
        return EpsilonResult(
            epsilon=eps,
            delta=float(delta),
            accountant="pate-data-dependent-rdp",
            relation=Neighbouring.ADD_REMOVE,
            details={
                "order": order,
                "data_independent_epsilon": ind,
                "data_independent_order": ind_order,
                "queries": self.queries,
                "mechanism": self.mechanism,
                "publishable": "no",
                "note": self.note,
            },
        )


# --- Probabilities of the non-plurality outcome -------------------------------------------------


def gnmax_log_q(votes: ArrayLike, sigma: float) -> NDArray[np.float64]:
    """log q̃ per histogram (rows of ``votes``): Prop. 7 of Papernot et al. 2018, the union bound
    Σ_{i≠i*} Pr[N(0, 2σ²) ≥ n_{i*} − n_i], capped at log((k−1)/k)."""
    sig = check_positive("sigma", sigma)
    v = _votes(votes)
    top = v.max(axis=1, keepdims=True)
    gaps = top - v
    logsf = stats.norm.logsf(gaps, scale=math.sqrt(2.0) * sig)
    # exclude exactly one argmax index per row
    first = np.argmax(v, axis=1)
    logsf[np.arange(v.shape[0]), first] = -np.inf
    logq = special.logsumexp(logsf, axis=1)
    k = v.shape[1]
    return np.asarray(np.minimum(logq, math.log1p(-1.0 / k)), dtype=float)


def laplace_log_q(votes: ArrayLike, scale: float) -> NDArray[np.float64]:
    """log q̃ per histogram for LNMax with Laplace(``scale``) noise: Papernot et al. 2017,
    Lemma 4, Σ_{j≠i*} (2 + g_j)/(4e^{g_j}) with g_j = (n_{i*} − n_j)/b, capped at log((k−1)/k)."""
    b = check_positive("scale", scale)
    v = _votes(votes)
    gaps = (v.max(axis=1, keepdims=True) - v) / b
    terms = np.log(2.0 + gaps) - math.log(4.0) - gaps
    terms[np.arange(v.shape[0]), np.argmax(v, axis=1)] = -np.inf
    logq = special.logsumexp(terms, axis=1)
    return np.asarray(np.minimum(logq, math.log1p(-1.0 / v.shape[1])), dtype=float)


def threshold_log_answered(votes: ArrayLike, threshold: float, sigma: float) -> NDArray[np.float64]:
    """log Pr[max_j n_j + N(0, σ²) ≥ T] per histogram (the threshold check of Confident-GNMax)."""
    sig = check_positive("sigma", sigma)
    v = _votes(votes)
    return np.asarray(stats.norm.logsf(threshold - v.max(axis=1), scale=sig), dtype=float)


# --- Theorem 6 ----------------------------------------------------------------------------------


def gaussian_data_dependent_rdp(log_q: float, sigma: float, orders: Orders) -> NDArray[np.float64]:
    """Thm. 6 with Prop. 10 of Papernot et al. 2018 for a mechanism whose data-independent RDP is
    λ/σ² (GNMax with noise σ; the threshold check with σ = √2·σ₁), given log q̃; never above λ/σ².
    """
    sig = check_positive("sigma", sigma)
    lam = _orders(orders)
    variance = sig * sig
    independent = lam / variance
    if log_q > 0 or math.isnan(log_q):
        raise InvalidParameterError("log_q", log_q, "a log-probability <= 0")
    if log_q == -math.inf:
        return np.zeros_like(lam)  # the outcome is certain: nothing is revealed
    mu2 = sig * math.sqrt(-log_q)
    mu1 = mu2 + 1.0
    eps1, eps2 = mu1 / variance, mu2 / variance
    if mu2 <= 1.0 or -log_q <= eps2:
        return independent
    condition = (mu2 - 1.0) * eps2 - mu2 * (
        math.log(mu1 / (mu1 - 1.0)) + math.log(mu2 / (mu2 - 1.0))
    )
    mask = lam < mu1
    if log_q > condition or not np.any(mask):
        return independent
    log1mq = _log1mexp(log_q)
    log_a = log1mq - _log1mexp((log_q + eps2) * (1.0 - 1.0 / mu2))
    log_b = eps1 - log_q / (mu1 - 1.0)
    with np.errstate(over="ignore"):
        log_s = np.logaddexp(log1mq + (lam - 1.0) * log_a, log_q + (lam - 1.0) * log_b)
    bound = log_s / (lam - 1.0)
    return np.where(mask, np.minimum(independent, np.maximum(bound, 0.0)), independent)


def pure_dp_data_dependent_rdp(log_q: float, epsilon: float, orders: Orders) -> NDArray[np.float64]:
    """Papernot et al. 2017, Thm. 3, for an ε-DP mechanism with Pr[M(D) ≠ i*] ≤ q̃:
    log((1−q̃)((1−q̃)/(1−e^ε q̃))^{λ−1} + q̃e^{ε(λ−1)})/(λ−1) when q̃ < 1/(e^ε + 1), and always
    at most min(λε²/2, ε) (pure DP ⇒ ε²/2-zCDP, Bun & Steinke 2016)."""
    eps = check_positive("epsilon", epsilon)
    lam = _orders(orders)
    pure = np.minimum(0.5 * eps * eps * lam, eps)
    if log_q > 0 or math.isnan(log_q):
        raise InvalidParameterError("log_q", log_q, "a log-probability <= 0")
    if log_q == -math.inf:
        return np.zeros_like(lam)
    if log_q >= -math.log1p(math.exp(eps)):
        return pure
    log1mq = _log1mexp(log_q)
    first = log1mq + (lam - 1.0) * (log1mq - _log1mexp(eps + log_q))
    second = log_q + eps * (lam - 1.0)
    return np.minimum(pure, np.maximum(np.logaddexp(first, second) / (lam - 1.0), 0.0))


# --- Whole runs ---------------------------------------------------------------------------------


def gnmax_rdp(votes: ArrayLike, sigma: float, orders: Orders = DEFAULT_ORDERS) -> DataDependentRdp:
    """Data-dependent RDP of GNMax(σ) answering every histogram in ``votes`` (one row a query)."""
    lam = _orders(orders)
    log_q = gnmax_log_q(votes, sigma)
    per_query = np.stack([gaussian_data_dependent_rdp(float(lq), sigma, lam) for lq in log_q])
    return DataDependentRdp(
        orders=lam,
        rdp=per_query.sum(axis=0),
        data_independent_rdp=log_q.size * lam / sigma**2,
        queries=int(log_q.size),
        mechanism="gnmax",
        per_query=per_query,
    )


def lnmax_rdp(votes: ArrayLike, scale: float, orders: Orders = DEFAULT_ORDERS) -> DataDependentRdp:
    """Data-dependent RDP of LNMax with Laplace(``scale``) noise (2/scale-DP per query)."""
    lam = _orders(orders)
    b = check_positive("scale", scale)
    log_q = laplace_log_q(votes, b)
    per_query = np.stack([pure_dp_data_dependent_rdp(float(lq), 2.0 / b, lam) for lq in log_q])
    independent = np.minimum(0.5 * (2.0 / b) ** 2 * lam, 2.0 / b)
    return DataDependentRdp(
        orders=lam,
        rdp=per_query.sum(axis=0),
        data_independent_rdp=log_q.size * independent,
        queries=int(log_q.size),
        mechanism="lnmax",
        per_query=per_query,
    )


def confident_gnmax_rdp(
    votes: ArrayLike,
    answered: ArrayLike,
    *,
    threshold: float,
    sigma_threshold: float,
    sigma: float,
    orders: Orders = DEFAULT_ORDERS,
) -> DataDependentRdp:
    """Data-dependent RDP of Confident-GNMax (Papernot et al. 2018, Alg. 1) on the realised
    run: every query pays the threshold check (σ₁ = ``sigma_threshold``), answered queries also
    pay GNMax(σ₂ = ``sigma``). ``answered`` is the boolean mask the aggregator returned."""
    lam = _orders(orders)
    v = _votes(votes)
    mask = np.asarray(answered, dtype=bool)
    if mask.shape != (v.shape[0],):
        raise InvalidParameterError("answered", mask.shape, f"a boolean mask of shape ({len(v)},)")
    log_pr = threshold_log_answered(v, threshold, sigma_threshold)
    s_thr = math.sqrt(2.0) * sigma_threshold
    per_query = np.zeros((v.shape[0], lam.size))
    for i, lp in enumerate(log_pr):
        log_q = min(float(lp), _log1mexp(float(lp)))  # the less likely of the two outcomes
        per_query[i] = gaussian_data_dependent_rdp(log_q, s_thr, lam)
    if mask.any():
        log_q_gn = gnmax_log_q(v[mask], sigma)
        rows = np.flatnonzero(mask)
        for row, lq in zip(rows, log_q_gn, strict=True):
            per_query[row] += gaussian_data_dependent_rdp(float(lq), sigma, lam)
    independent = v.shape[0] * lam / s_thr**2 + int(mask.sum()) * lam / sigma**2
    return DataDependentRdp(
        orders=lam,
        rdp=per_query.sum(axis=0),
        data_independent_rdp=independent,
        queries=int(v.shape[0]),
        mechanism="confident_gnmax",
        per_query=per_query,
    )


# --- Helpers ------------------------------------------------------------------------------------


def _votes(votes: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(votes, dtype=float)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] < 2 or v.shape[0] < 1 or not np.all(np.isfinite(v)):
        raise InvalidParameterError(
            "votes", getattr(v, "shape", v), "a (queries, classes >= 2) array of finite counts"
        )
    if np.any(v < 0):
        raise InvalidParameterError("votes", float(v.min()), "counts >= 0")
    return v


def _orders(orders: Orders) -> NDArray[np.float64]:
    lam = np.atleast_1d(np.asarray(orders, dtype=float))
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 1):
        raise InvalidParameterError("orders", orders, "a non-empty sequence of finite numbers > 1")
    return lam


def _log1mexp(x: float) -> float:
    """log(1 − e^x) for x <= 0, accurately."""
    if x > 0:
        raise InvalidParameterError("x", x, "<= 0")
    if x == 0:
        return -math.inf
    return math.log1p(-math.exp(x)) if x < -math.log(2.0) else math.log(-math.expm1(x))


__all__ = [
    "NOT_PUBLISHABLE",
    "DataDependentRdp",
    "confident_gnmax_rdp",
    "gaussian_data_dependent_rdp",
    "gnmax_log_q",
    "gnmax_rdp",
    "laplace_log_q",
    "lnmax_rdp",
    "pure_dp_data_dependent_rdp",
    "threshold_log_answered",
]
