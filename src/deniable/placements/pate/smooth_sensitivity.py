"""Publishing PATE's data-dependent privacy cost through its smooth sensitivity (Papernot, Song,
Mironov, Raghunathan, Talwar & Erlingsson 2018, "Scalable private learning with PATE", ICLR,
Appendix B). No torch here.

The data-dependent RDP ε(λ; D) of :mod:`deniable.accounting.pate_rdp` is a function of the private
teacher votes, so publishing it as it is leaks them. Papernot et al. publish a noisy version,

    ε̂(λ) = ε(λ; D) + SS_β(D)·σ_s·Z,   Z ~ N(0, 1),

the Gaussian noise scaled by smooth sensitivity (GNSS) mechanism, where SS_β is a β-smooth upper
bound on the local sensitivity of ε(λ; ·) (Nissim, Raskhodnikova & Smith 2007): SS_β(D) =
max_d e^{−βd}·A(d), with A(d) ≥ the local sensitivity of every D' within distance d of D and
non-decreasing in d, so that SS_β(D') ≤ e^β·SS_β(D) for neighbours. Everything published (the
noisy labels and ε̂) then costs ε(λ; D) + ε_s at order λ, estimated publicly by ε̂ + ε_s
(:class:`PublishedRdp`), where ε_s is the RDP of the GNSS release (:func:`gnss_rdp`).

The cost of the release, ε_s. M(D) = N(f(D), s²) and M(D') = N(f(D'), r²s²) with s = SS_β(D)·σ_s,
r ∈ [e^{−β}, e^β] and |f(D) − f(D')| ≤ min(1, r)·SS_β(D) (local sensitivity of D and of D'). The
Rényi divergence of two Gaussians (Gil, Alajaji & Linder 2013) is
log r + log(r²/κ_r)/(2(λ − 1)) + λΔ²/(2s²κ_r), κ_r = λr² + 1 − λ; bounding its scale and mean
parts over r ≤ 1 and r ≥ 1 separately gives :func:`gnss_rdp`. Papernot et al.'s Theorem 23 (the
reference code's ``compute_rdp_of_smooth_sensitivity_gaussian``) states
λe^{2β}/σ_s² + (βλ − ½log(1 − 2λβ))/(λ − 1), which is *below* the exact divergence of an
admissible pair once β exceeds about 1/(4λ) (e.g. λ = 5, β = 0.4/λ, σ_s = 1: 6.17 against 8.24;
the authors' scripts use β up to 0.49/λ), so it is not used; the bound here is also the smaller
one for small β.

Neighbours: add/remove one privacy unit, which changes at most one teacher's vote (one count −1,
another +1) on every query at once, so each query's histogram moves by at most one vote per step
and the run's local sensitivity at distance d is at most the sum of the queries' A(d). Every
distance is covered: d runs from 0 to the number of teachers N, where any histogram is reachable.

A(d) per query (the authors' reference code, tensorflow/privacy
``research/pate_2018/smooth_sensitivity.py``, transcribed and checked against its unit tests):

- GNMax (their Algorithms 3–5, Proposition 13): the cost is β(q) = Thm. 6's bound below q₀ (where
  it meets the data-independent λ/σ², or the largest q where Thm. 6 is known to apply) and λ/σ²
  above; a neighbour's q lies in [bl(q), bu(q)], (m − 1)·Pr[N(0, 1) ≥ t ± √2/σ] with
  Pr[N(0, 1) ≥ t] = q/(m − 1). The local sensitivity is largest on [q₁, q₀] (q₁ = bl(q₀)), and
  A(d) moves the votes d steps towards that plateau. **This rests on conditions C5 and C6** (β
  non-decreasing on (0, q₀); β(bu(q)) − β(q) non-decreasing on (0, q₁)), which the authors check
  numerically for each (σ, m, λ): :func:`gnmax_conditions` does so on a dense grid, and the
  analysis refuses parameters where they fail.
- Threshold check of Confident-GNMax: its cost depends only on max_j n_j, which moves by at most
  1 a step, so A(d) is the largest cost change next to a max vote d steps away (exact).

Differences from the reference code, all conservative: its arrays stop at distance N − 1
(GNMax) and skip a max vote of 0 (threshold), here both reach N; each query's A(d) is made
non-decreasing before the sum (needed for the β-smoothness of a sum); where β jumps at q₀ (q₀ is
then the largest q where Thm. 6 applies, not a crossing), bu(q₁) counts as q₀ rather than
whichever side rounding puts it (the reference's plateau then misses the jump: brute force over
all histograms found local sensitivities above its A(d)); tiny q are handled in log space where
erfc/erfcinv underflow.

What is *not* private: the order λ, β and σ_s must be chosen without looking at the votes (the
authors' scripts tune them on the private data, which they flag as not publishable). ε̂ is a
noisy estimate, not an upper bound: it is below ε(λ; D) about half the time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from deniable.accounting.pate_rdp import _log1mexp, gaussian_data_dependent_rdp, gnmax_log_q
from deniable.accounting.rdp import rdp_to_epsilon
from deniable.accounting.result import EpsilonResult
from deniable.errors import DeniableError, InvalidParameterError, check_delta, check_positive
from deniable.events import Neighbouring
from deniable.mechanisms import RandomSource
from deniable.mechanisms._inputs import source
from deniable.placements.output_perturbation import _standard_normal
from deniable.placements.pate.aggregators import Aggregation, Aggregator, ConfidentGNMax, GNMax

SQRT2 = math.sqrt(2.0)


# --- GNMax: the cost as a function of q and its local sensitivity -----------------------------


def _dep_bound(log_q: float, sigma: float, order: float) -> float:
    """Thm. 6 with Prop. 10 (μ₂ = σ·sqrt(log 1/q), μ₁ = μ₂ + 1) without its validity checks:
    the caller guarantees log_q < log q₀ (or is checking conditions on that range)."""
    if log_q == -math.inf:
        return 0.0
    variance = sigma * sigma
    mu2 = sigma * math.sqrt(-log_q)
    mu1 = mu2 + 1.0
    eps1, eps2 = mu1 / variance, mu2 / variance
    log1q = _log1mexp(log_q)
    log_a = (order - 1.0) * (log1q - _log1mexp((log_q + eps2) * (1.0 - 1.0 / mu2)))
    log_b = (order - 1.0) * (eps1 - log_q / (mu1 - 1.0))
    return float(np.logaddexp(log1q + log_a, log_q + log_b) / (order - 1.0))


def _valid(log_q: float, sigma: float, order: float) -> bool:
    """Thm. 6's conditions (with Lemma 9) at log_q, for order λ."""
    mu2 = sigma * math.sqrt(-log_q)
    mu1 = mu2 + 1.0
    if mu1 < order or mu2 <= 1.0:
        return False
    eps2 = mu2 / sigma**2
    return log_q <= (mu2 - 1.0) * eps2 - mu2 * math.log(mu1 / (mu1 - 1.0) * mu2 / (mu2 - 1.0))


@functools.lru_cache(maxsize=256)
def gnmax_log_q0(sigma: float, order: float) -> float:
    """log q₀: below it Thm. 6's bound on GNMax(σ) at order λ is smaller than λ/σ², above it
    λ/σ² is used (the authors' ``compute_logq0_gnmax``)."""
    sig = check_positive("sigma", sigma)
    lam = _order(order)
    independent = lam / sig**2

    def excess(log_q: float) -> float:
        return _dep_bound(log_q, sig, lam) - independent

    log_ub = min(-((1.0 + 1.0 / sig) ** 2), -(((lam - 0.99) / sig) ** 2), -1.0 / sig**2)
    if not _valid(log_ub, sig, lam):  # the authors assert this cannot happen
        raise DeniableError(f"Thm. 6 does not apply at log q = {log_ub:.4g} (σ={sig}, λ={lam})")
    if excess(log_ub) < 0:
        return log_ub
    log_lb = 2.0 * log_ub
    while excess(log_lb) > 0:
        if log_lb < -1e4:
            raise DeniableError(f"no crossover q0 for sigma={sig}, order={lam}")
        log_lb *= 1.5
    log_q0 = float(optimize.brentq(excess, log_lb, log_ub))
    if not _valid(log_q0, sig, lam):
        raise DeniableError(f"Thm. 6 does not apply at log q0 = {log_q0:.4g} (σ={sig}, λ={lam})")
    return log_q0


def gnmax_rdp_of_q(log_q: float, sigma: float, order: float) -> float:
    """β(q): the GNMax(σ) cost at order λ whose sensitivity is analysed, Thm. 6's bound for
    log q < log q₀ and λ/σ² otherwise (the authors' ``_compute_rdp_gnmax``). Equal to
    :func:`~deniable.accounting.pate_rdp.gaussian_data_dependent_rdp` at that order below q₀,
    and never below it (it can be above it just above q₀ when q₀ is the natural bound)."""
    log_q0 = gnmax_log_q0(sigma, order)
    if log_q >= log_q0:
        return order / sigma**2
    return _dep_bound(log_q, sigma, order)


def _log_bound_q(log_q: float, sigma: float, num_classes: int, upper: bool) -> float:
    """log bu(q) (``upper``) or log bl(q): the largest / smallest q̃ of a neighbouring histogram
    (Prop. 13), (m − 1)·Pr[N(0,1) ≥ t ∓ √2/σ] with Pr[N(0,1) ≥ t] = q/(m − 1), in log space."""
    log_m1 = math.log(num_classes - 1)
    t = -float(special.ndtri_exp(log_q - log_m1))
    shift = -SQRT2 / sigma if upper else SQRT2 / sigma
    out = log_m1 + float(special.log_ndtr(-(t + shift)))  # log Pr[N(0,1) ≥ t + shift]
    return min(out, 0.0) if upper else out


def gnmax_local_sensitivity(log_q: float, sigma: float, num_classes: int, order: float) -> float:
    """An upper bound on the local sensitivity of β(q) at a histogram with union-bound q
    (Algorithm 3 of Papernot et al. 2018; the authors' ``_compute_local_sens_gnmax``)."""
    log_q0 = gnmax_log_q0(sigma, order)
    log_q1 = _log_bound_q(log_q0, sigma, num_classes, upper=False)
    if log_q1 <= log_q <= log_q0:
        log_q = log_q1
    beta = gnmax_rdp_of_q(log_q, sigma, order)
    log_up = _log_bound_q(log_q, sigma, num_classes, True)
    if log_up >= log_q0 - 1e-9 * abs(log_q0):
        # β jumps to λ/σ² at q₀ when Thm. 6's bound is still below it there (q₀ = the natural
        # upper bound): a bu(q) that only rounding puts below q₀ (bu(q₁) = q₀) counts as q₀
        log_up = log_q0
    beta_up = gnmax_rdp_of_q(log_up, sigma, order)
    beta_low = gnmax_rdp_of_q(_log_bound_q(log_q, sigma, num_classes, False), sigma, order)
    return max(beta_up - beta, beta - beta_low)


def gnmax_local_sensitivities(votes: ArrayLike, sigma: float, order: float) -> NDArray[np.float64]:
    """A(d) for d = 0..N (N = the number of teachers, the row's sum): an upper bound on the
    local sensitivity of one GNMax(σ) query's cost at order λ, over the histograms d vote moves
    away from ``votes`` (Papernot et al. 2018, Algorithms 4–5; the authors'
    ``compute_local_sensitivity_bounds_gnmax``, with d = N added)."""
    sig = check_positive("sigma", sigma)
    lam = _order(order)
    row = _row(votes)
    teachers = int(row.sum())
    m = row.size
    log_q0 = gnmax_log_q0(sig, lam)
    log_q1 = _log_bound_q(log_q0, sig, m, upper=False)
    plateau = gnmax_local_sensitivity(log_q1, sig, m, lam)
    out = np.full(teachers + 1, plateau)
    log_q = _log_q(row, sig)
    if log_q1 <= log_q <= log_q0:
        return out
    current = sorted((int(v) for v in row), reverse=True)
    out[0] = gnmax_local_sensitivity(log_q, sig, m, lam)
    go_left = log_q > log_q0  # else log_q < log_q1: move votes to raise q
    d = 0
    while d < teachers and (
        (go_left and log_q > log_q0 and current[1] > 0) or (not go_left and log_q < log_q1)
    ):
        d += 1
        if go_left:  # widen the gap between the top two counts
            current[0] += 1
            current[1] -= 1
        else:  # narrow it
            current[0] -= 1
            current[1] += 1
        current.sort(reverse=True)
        log_q = _log_q(np.asarray(current), sig)
        out[d] = gnmax_local_sensitivity(log_q, sig, m, lam)
    return out


# --- Threshold check of Confident-GNMax --------------------------------------------------------


def threshold_rdp_by_max_vote(
    teachers: int, threshold: float, sigma_threshold: float, order: float
) -> NDArray[np.float64]:
    """The threshold check's data-dependent cost at order λ for max vote v = 0..N (the realised
    path's cost, :func:`~deniable.accounting.pate_rdp.confident_gnmax_rdp`)."""
    sig = check_positive("sigma_threshold", sigma_threshold)
    lam = np.array([_order(order)])
    out = np.empty(teachers + 1)
    for v in range(teachers + 1):
        log_pr = float(stats.norm.logsf(threshold - v, scale=sig))
        log_q = min(log_pr, _log1mexp(log_pr))
        out[v] = gaussian_data_dependent_rdp(log_q, SQRT2 * sig, lam)[0]
    return out


def threshold_local_sensitivities(
    votes: ArrayLike, threshold: float, sigma_threshold: float, order: float
) -> NDArray[np.float64]:
    """A(d) for d = 0..N for the threshold check of one query (the authors'
    ``compute_local_sensitivity_bounds_threshold``, with a max vote of 0 included)."""
    if not math.isfinite(threshold):
        raise InvalidParameterError("threshold", threshold, "a finite number")
    row = _row(votes)
    teachers = int(row.sum())
    costs = threshold_rdp_by_max_vote(teachers, threshold, sigma_threshold, order)
    return _threshold_at_distance(_threshold_ls_by_max_vote(costs), int(row.max()))


def _threshold_ls_by_max_vote(costs: NDArray[np.float64]) -> NDArray[np.float64]:
    """The local sensitivity at a max vote v: the larger cost step to v − 1 or v + 1."""
    steps = np.abs(np.diff(costs))  # steps[v] = |cost(v + 1) − cost(v)|
    at_v = np.zeros(costs.size)
    at_v[:-1] = steps
    at_v[1:] = np.maximum(at_v[1:], steps)
    return at_v


def _threshold_at_distance(at_v: NDArray[np.float64], top: int) -> NDArray[np.float64]:
    teachers = at_v.size - 1
    out = np.zeros(teachers + 1)
    for d in range(max(top, teachers - top) + 1):
        out[d] = max(at_v[v] for v in (top + d, top - d) if 0 <= v <= teachers)
    return out


# --- Smooth sensitivity and the GNSS mechanism ------------------------------------------------


def smooth_sensitivity(local_sensitivities: ArrayLike, beta: float) -> float:
    """SS_β = max_d e^{−βd}·A(d) from A(d), d = 0, 1, ... (the authors'
    ``compute_discounted_max``); β ≥ 0."""
    a = np.asarray(local_sensitivities, dtype=float)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InvalidParameterError(
            "local_sensitivities", getattr(a, "shape", a), "a non-empty 1-d array of finite >= 0"
        )
    b = _beta(beta)
    return float(np.max(a * np.exp(-b * np.arange(a.size))))


def gnss_rdp(beta: float, sigma: float, order: float) -> float:
    """RDP at order λ of releasing f(D) + SS_β(D)·N(0, σ²) (GNSS): an upper bound on the Rényi
    divergence of every pair of outputs on neighbours (see the module docstring),

        max(V(e^β) + λ/(2σ²),  V(e^{−β}) + λe^{−2β}/(2σ²κ)),
        V(r) = log r + log(r²/κ_r)/(2(λ − 1)),  κ_r = λr² + 1 − λ,  κ = κ_{e^{−β}},

    the first for SS_β(D') ≥ SS_β(D), the second for SS_β(D') < SS_β(D). V(r) is
    D_λ(N(0, 1)‖N(0, r²)), decreasing in r below 1 and increasing above (its derivative is
    λ(r² − 1)/(rκ_r)), and the mean term is largest at the smallest r, so each branch is bounded
    at its end. Needs κ > 0, which λ < 1/(2β) ensures. Papernot et al.'s Thm. 23 is not used: it
    is below the exact divergence of an admissible pair for β above about 1/(4λ)."""
    b = _beta(beta)
    sig = check_positive("sigma", sigma)
    lam = _order(order)
    shrink = math.exp(-2.0 * b)
    kappa = 1.0 - lam * (1.0 - shrink)
    if not kappa > 0:
        limit = 0.5 * math.log(lam / (lam - 1.0))
        raise InvalidParameterError("beta", b, f"< {limit:.6g} (order·(1 − e^(−2β)) < 1)")

    def scale_divergence(log_r: float, kappa_r: float) -> float:
        return log_r + (2.0 * log_r - math.log(kappa_r)) / (2.0 * (lam - 1.0))

    wider = scale_divergence(b, lam / shrink + 1.0 - lam) + lam / (2.0 * sig**2)
    narrower = scale_divergence(-b, kappa) + lam * shrink / (2.0 * sig**2 * kappa)
    return max(wider, narrower)


@functools.lru_cache(maxsize=256)
def gnmax_conditions(sigma: float, num_classes: int, order: float) -> tuple[bool, bool]:
    """Conditions C5 and C6 of Papernot et al. 2018 (App. B.4.2) for GNMax(σ), m classes, order
    λ: Thm. 6's bound β(q) is non-decreasing on (0, q₀), and β(bu(q)) − β(q) on (0, bl(q₀)).

    The authors minimise the symbolic derivative with a bounded scalar search; here both
    functions are evaluated on 4000 points (3000 evenly spaced in q over [q_max·1e-3, q_max],
    1000 in log q down to q_max·1e-12) and every step must be non-decreasing up to 1e-12
    relative (floating-point noise). Like theirs, a numerical check, not a proof; the tests
    compare it with brute force over all vote histograms."""
    sig = check_positive("sigma", sigma)
    lam = _order(order)
    m = int(num_classes)
    log_q0 = gnmax_log_q0(sig, lam)

    def non_decreasing(values: NDArray[np.float64]) -> bool:
        slack = 1e-12 * max(1.0, float(np.max(np.abs(values))))
        return bool(np.all(np.diff(values) >= -slack))

    grid = _log_grid(log_q0)
    c5 = non_decreasing(np.array([_dep_bound(x, sig, lam) for x in grid]))
    if not c5:
        return False, False
    grid = _log_grid(_log_bound_q(log_q0, sig, m, upper=False))
    delta = [
        _dep_bound(_log_bound_q(x, sig, m, True), sig, lam) - _dep_bound(x, sig, lam) for x in grid
    ]
    return True, non_decreasing(np.array(delta))


def _log_grid(log_top: float) -> NDArray[np.float64]:
    """log q points on (0, e^{log_top}]: dense near the top in q, and down to 1e-12 of it."""
    top = math.exp(log_top)
    linear = np.log(np.linspace(top * 1e-3, top, 3000))
    geometric = log_top + np.linspace(math.log(1e-12), math.log(1e-3), 1000)
    return np.concatenate([geometric[:-1], linear])


# --- Releases ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SmoothSensitivityAnalysis:
    """The private side of a release at order λ: the data-dependent cost ε(λ; D) of the run (the
    function whose sensitivity is analysed), the local-sensitivity bounds A(d) of the whole run
    for d = 0..N (each query's made non-decreasing in d, then summed) and SS_β. **Not for
    publication**: all three are functions of the votes."""

    order: float
    beta: float
    data_dependent_rdp: float
    local_sensitivities: NDArray[np.float64]
    smooth_sensitivity: float
    queries: int
    mechanism: str
    publishable: bool = False


@dataclass(frozen=True, eq=False)
class PublishedRdp:
    """A publishable estimate of PATE's data-dependent RDP at one order λ.

    ``noisy_rdp`` = ε(λ; D) + SS_β·σ_s·Z (GNSS); ``release_rdp`` = :func:`gnss_rdp`, the RDP of
    publishing it; :attr:`total_rdp` = max(``noisy_rdp``, 0) + ``release_rdp`` estimates the cost
    at λ of everything released (the noisy labels and this number): add the RDP at λ of anything
    else released about the same data. ``analysis`` is private (see
    :class:`SmoothSensitivityAnalysis`)."""

    order: float
    beta: float
    sigma: float
    noisy_rdp: float
    release_rdp: float
    queries: int
    mechanism: str
    secure: bool
    analysis: SmoothSensitivityAnalysis = field(repr=False)
    relation: Neighbouring = Neighbouring.ADD_REMOVE

    @property
    def total_rdp(self) -> float:
        return max(self.noisy_rdp, 0.0) + self.release_rdp

    def epsilon(self, delta: float) -> EpsilonResult:
        """(ε, δ) from :attr:`total_rdp` at the one order λ (the conversion of
        :func:`~deniable.accounting.rdp.rdp_to_epsilon`). A noisy estimate: see the module
        docstring."""
        dlt = check_delta(delta)
        eps, _ = rdp_to_epsilon([self.order], [self.total_rdp], dlt)
        return EpsilonResult(
            epsilon=eps,
            delta=dlt,
            accountant="pate-smooth-sensitivity",
            relation=self.relation,
            details={
                "order": self.order,
                "beta": self.beta,
                "sigma": self.sigma,
                "noisy_rdp": self.noisy_rdp,
                "release_rdp": self.release_rdp,
                "queries": self.queries,
                "mechanism": self.mechanism,
                "publishable": "yes (a noisy estimate, not an upper bound)",
            },
        )


def analyse_gnmax(
    votes: ArrayLike, *, sigma: float, order: float, beta: float
) -> SmoothSensitivityAnalysis:
    """ε(λ; D), A(d) and SS_β of GNMax(σ) answering every row of ``votes``. Refuses (σ, classes,
    λ) where conditions C5–C6 fail."""
    sig = check_positive("sigma", sigma)
    lam = _order(order)
    b = _beta(beta)
    v = _votes(votes)
    _require_conditions(sig, v.shape[1], lam)
    cost, ls = _gnmax_part(v, sig, lam)
    return SmoothSensitivityAnalysis(
        lam, b, cost, ls, smooth_sensitivity(ls, b), v.shape[0], "gnmax"
    )


def analyse_confident_gnmax(
    votes: ArrayLike,
    answered: ArrayLike,
    *,
    threshold: float,
    sigma_threshold: float,
    sigma: float,
    order: float,
    beta: float,
) -> SmoothSensitivityAnalysis:
    """ε(λ; D), A(d) and SS_β of a Confident-GNMax run on its realised path: every row of
    ``votes`` was checked (threshold cost), the rows ``answered`` marks also pay GNMax(σ)."""
    sig = check_positive("sigma", sigma)
    sig1 = check_positive("sigma_threshold", sigma_threshold)
    if not math.isfinite(threshold):
        raise InvalidParameterError("threshold", threshold, "a finite number")
    lam = _order(order)
    b = _beta(beta)
    v = _votes(votes)
    mask = np.asarray(answered)
    if mask.dtype != np.bool_ or mask.shape != (v.shape[0],):
        raise InvalidParameterError(
            "answered", getattr(mask, "shape", mask), f"a boolean mask of shape ({v.shape[0]},)"
        )
    teachers = int(v[0].sum())
    costs = threshold_rdp_by_max_vote(teachers, threshold, sig1, lam)
    at_v = _threshold_ls_by_max_vote(costs)
    cost = float(costs[v.max(axis=1)].sum())
    ls = np.zeros(teachers + 1)
    for top in v.max(axis=1):
        ls += np.maximum.accumulate(_threshold_at_distance(at_v, int(top)))
    if mask.any():
        _require_conditions(sig, v.shape[1], lam)
        gn_cost, gn_ls = _gnmax_part(v[mask], sig, lam)
        cost += gn_cost
        ls += gn_ls
    return SmoothSensitivityAnalysis(
        lam, b, cost, ls, smooth_sensitivity(ls, b), v.shape[0], "confident_gnmax"
    )


def publish_gnmax_rdp(
    votes: ArrayLike,
    *,
    sigma: float,
    order: float,
    beta: float,
    release_sigma: float,
    rng: RandomSource | None = None,
) -> PublishedRdp:
    """Publish the data-dependent RDP at order λ of GNMax(σ) answering every row of ``votes``,
    through GNSS with smoothing β and noise σ_s = ``release_sigma``."""
    release_rdp = _release_cost(order, beta, release_sigma)
    analysis = analyse_gnmax(votes, sigma=sigma, order=order, beta=beta)
    return _release(analysis, release_sigma, release_rdp, rng)


def publish_confident_gnmax_rdp(
    votes: ArrayLike,
    answered: ArrayLike,
    *,
    threshold: float,
    sigma_threshold: float,
    sigma: float,
    order: float,
    beta: float,
    release_sigma: float,
    rng: RandomSource | None = None,
) -> PublishedRdp:
    """Publish the data-dependent RDP at order λ of a Confident-GNMax run (see
    :func:`analyse_confident_gnmax`) through GNSS."""
    release_rdp = _release_cost(order, beta, release_sigma)
    analysis = analyse_confident_gnmax(
        votes,
        answered,
        threshold=threshold,
        sigma_threshold=sigma_threshold,
        sigma=sigma,
        order=order,
        beta=beta,
    )
    return _release(analysis, release_sigma, release_rdp, rng)


def publish_data_dependent_rdp(
    aggregator: Aggregator,
    votes: ArrayLike,
    aggregation: Aggregation,
    *,
    order: float,
    beta: float,
    release_sigma: float,
    rng: RandomSource | None = None,
) -> PublishedRdp:
    """:func:`publish_gnmax_rdp` or :func:`publish_confident_gnmax_rdp` for a PATE run (e.g.
    ``result.aggregator, result.votes, result.aggregation`` of a
    :class:`~deniable.placements.pate.PateResult`). LNMax is not supported."""
    v = _votes(votes)
    if isinstance(aggregator, GNMax):
        return publish_gnmax_rdp(
            v, sigma=aggregator.sigma, order=order, beta=beta, release_sigma=release_sigma, rng=rng
        )
    if isinstance(aggregator, ConfidentGNMax):
        checked = aggregation.checked
        return publish_confident_gnmax_rdp(
            v[checked],
            aggregation.answered[checked],
            threshold=aggregator.threshold,
            sigma_threshold=aggregator.sigma_threshold,
            sigma=aggregator.sigma,
            order=order,
            beta=beta,
            release_sigma=release_sigma,
            rng=rng,
        )
    raise InvalidParameterError(
        "aggregator",
        type(aggregator).__name__,
        "GNMax or ConfidentGNMax (no smooth-sensitivity analysis of LNMax)",
    )


# --- Helpers -----------------------------------------------------------------------------------


def _gnmax_part(
    votes: NDArray[np.int64], sigma: float, order: float
) -> tuple[float, NDArray[np.float64]]:
    teachers = int(votes[0].sum())
    m = votes.shape[1]
    unanimous = np.zeros(m)
    unanimous[0] = teachers
    log_q = gnmax_log_q(votes, sigma)
    cost = float(sum(gnmax_rdp_of_q(float(x), sigma, order) for x in log_q))
    if _log_q(unanimous, sigma) >= gnmax_log_q0(sigma, order):
        # even unanimous votes get λ/σ²: the cost is the same for every histogram
        return cost, np.zeros(teachers + 1)
    ls = np.zeros(teachers + 1)
    for row in votes:
        ls += np.maximum.accumulate(gnmax_local_sensitivities(row, sigma, order))
    return cost, ls


def _release(
    analysis: SmoothSensitivityAnalysis,
    release_sigma: float,
    release_rdp: float,
    rng: RandomSource | None,
) -> PublishedRdp:
    src = source(rng)
    noise = float(_standard_normal(src, 1)[0]) * analysis.smooth_sensitivity * release_sigma
    return PublishedRdp(
        order=analysis.order,
        beta=analysis.beta,
        sigma=release_sigma,
        noisy_rdp=analysis.data_dependent_rdp + noise,
        release_rdp=release_rdp,
        queries=analysis.queries,
        mechanism=analysis.mechanism,
        secure=src.is_secure,
        analysis=analysis,
    )


def _require_conditions(sigma: float, num_classes: int, order: float) -> None:
    c5, c6 = gnmax_conditions(sigma, num_classes, order)
    if not (c5 and c6):
        failed = "C5" if not c5 else "C6"
        raise DeniableError(
            f"condition {failed} of Papernot et al. 2018 (App. B.4.2) fails for sigma={sigma}, "
            f"{num_classes} classes, order={order}: the smooth-sensitivity bound is not proven "
            "there; use a larger sigma or another order, or publish the data-independent epsilon"
        )


def _release_cost(order: float, beta: float, release_sigma: float) -> float:
    return gnss_rdp(beta, check_positive("release_sigma", release_sigma), order)


def _log_q(row: ArrayLike, sigma: float) -> float:
    """:func:`~deniable.accounting.pate_rdp.gnmax_log_q` of one histogram, without the overhead
    of scipy.stats (this runs once per step of the distance loop)."""
    v = np.asarray(row, dtype=float)
    top = int(np.argmax(v))
    gaps = np.delete(v[top] - v, top)
    terms = special.log_ndtr(-gaps / (SQRT2 * sigma))
    peak = float(terms.max())
    log_q = peak + math.log(float(np.exp(terms - peak).sum()))
    return min(log_q, math.log1p(-1.0 / v.size))


def _order(order: float) -> float:
    if isinstance(order, bool) or not isinstance(order, int | float) or not 1 < order < math.inf:
        raise InvalidParameterError("order", order, "a finite number > 1")
    return float(order)


def _beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta < math.inf:
        raise InvalidParameterError("beta", beta, "a finite number >= 0")
    return float(beta)


def _row(votes: ArrayLike) -> NDArray[np.int64]:
    v = _votes(votes)
    if v.shape[0] != 1:
        raise InvalidParameterError("votes", v.shape, "one histogram (a 1-d array of counts)")
    return v[0]


def _votes(votes: ArrayLike) -> NDArray[np.int64]:
    v = np.asarray(votes)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 2 or v.dtype.kind not in "iu":
        raise InvalidParameterError(
            "votes", getattr(v, "shape", v), "integer counts, (queries >= 1, classes >= 2)"
        )
    if np.any(v < 0):
        raise InvalidParameterError("votes", int(v.min()), "counts >= 0")
    sums = v.sum(axis=1)
    if sums.min() != sums.max() or sums[0] < 1:
        raise InvalidParameterError(
            "votes",
            f"row sums {int(sums.min())}..{int(sums.max())}",
            "histograms that each sum to the number of teachers (>= 1)",
        )
    return v.astype(np.int64)


__all__ = [
    "PublishedRdp",
    "SmoothSensitivityAnalysis",
    "analyse_confident_gnmax",
    "analyse_gnmax",
    "gnmax_conditions",
    "gnmax_local_sensitivities",
    "gnmax_local_sensitivity",
    "gnmax_log_q0",
    "gnmax_rdp_of_q",
    "gnss_rdp",
    "publish_confident_gnmax_rdp",
    "publish_data_dependent_rdp",
    "publish_gnmax_rdp",
    "smooth_sensitivity",
    "threshold_local_sensitivities",
    "threshold_rdp_by_max_vote",
]
