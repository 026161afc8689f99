"""One-run auditing through f-DP: a tighter ε lower bound from the same m canaries and guesses.

Mahloujifar, Melis & Chaudhuri 2025, "Auditing f-differential privacy in one run" (ICML;
arXiv 2410.22235). The game is that of :mod:`deniable.audit.bounds_one_run` (Steinke, Nasr &
Jagielski 2023): each of m canaries is included independently with probability ½, the auditor
guesses "in" for the k₊ highest scores and "out" for the k₋ lowest and abstains on the rest, and
W counts the right guesses out of k = k₊ + k₋. Instead of (ε, δ), the hypothesis is a trade-off
curve f for each canary (add/remove-one): here f = G_μ, the curve of μ-GDP (Dong, Roth & Su 2019),
which the Gaussian mechanism follows exactly and DP-SGD approximately.

Why it is tighter: (ε, δ) describes only one straight-line bound on the trade-off curve; the
f-DP analysis uses the whole curve. If an event has probability y with canary i's bit set one way,
its probability with the bit flipped is at least f̄⁻¹(y), where f̄(x) = 1 − f(x) is the
"blow-up" of f; for G_μ, f̄⁻¹(y) = Φ(Φ⁻¹(y) − μ), for ε-DP f̄⁻¹(y) = max(e^−ε y, 1 − e^ε (1 − y)).

The bound (the paper's recursion for reconstruction with abstention, with k_alphabet = 2 choices
per canary). Suppose P[W ≥ v] ≥ τ. Start from

    r_v = τ·v/m,        h_v = τ·(k − v)/m,

and for i = v − 1, ..., 0

    h_i = max(h_{i+1}, f̄⁻¹(r_{i+1})),      r_i = r_{i+1} + i/(k − i) · (h_i − h_{i+1}).

r_i and h_i are the paper's lower bounds, under the supposition, on the probability mass (per
canary) of right and of wrong guesses, built up one right guess at a time: flipping the bit of a
canary guessed right makes the same guess wrong, and f-DP forces at least f̄⁻¹ of that mass
across. All guesses together carry mass exactly k/m, so r_0 + h_0 > k/m contradicts the
supposition: then P[W ≥ v] < τ. The upper bound on the tail is therefore the
smallest τ whose recursion exceeds k/m (:func:`fdp_tail_bound`), and the hypothesis "μ-GDP" is
rejected at level α when the recursion at τ = α exceeds k/m. Checked in the tests: with the
ε-DP curve and v = k it equals (e^ε/(1 + e^ε))^k, the exact tail of ε-randomised response (tight),
it is never below the binomial tail of randomised response, and the decisions agree with a literal
transcription of the reference code, ``rh_with_cap``/``audit_rh_with_cap`` in
facebookresearch/PrivacyGuard (privacy_guard/analysis/mia/fdp_analysis_node.py), also used by
google-deepmind/jax_privacy (auditing/canary_score_auditor.py, ``_epsilon_one_run_fdp``).

μ_lb is the end of the interval [0, μ_lb) of rejected μ (the rejection is monotone in μ, checked
numerically in the tests), found by bisection; the μ reported is always verified rejected.
ε_lb = ε(μ_lb, δ) by the exact GDP → (ε, δ) conversion (Dong, Roth & Su 2019, Cor. 2.13;
:func:`deniable.accounting.gaussian_exact.gaussian_epsilon`). The bound is valid only if each
canary's trade-off curve is at least G_μ for some μ: exactly so for the Gaussian mechanism, only
approximately for subsampled DP-SGD (over many steps). For a mechanism with another curve μ_lb is
still a valid lower bound on its μ, but ε(μ_lb, δ) can exceed its true ε (as for the GDP route of
:mod:`deniable.audit.bounds_threshold`). It needs δ > 0: μ-GDP is not ε-DP for any finite ε.
The guess-count grid and its Bonferroni correction are those of
:func:`deniable.audit.bounds_one_run.one_run_lower_bound`.

Numerics: both r and h only grow, so the recursion stops as soon as r + h exceeds k/m (reject) or
f̄⁻¹(r) ≤ h (nothing changes any more, as in jax_privacy). A rejection needs r_0 + h_0 to exceed
k/m by a relative 1e-9, so that rounding in the sums never rejects: without it, tails below 1e-13
came out up to 20 % under the exact randomised-response tail; with it, none did (tests, down to
1e-137).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from numpy.typing import ArrayLike
from scipy import special

from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.audit.bounds_binomial import check_audit_delta, check_confidence
from deniable.audit.bounds_one_run import search_guesses
from deniable.audit.bounds_result import LowerBound
from deniable.errors import InvalidParameterError, check_count

InverseBlowUp = Callable[[float], float]

_MARGIN = 1e-9  # relative excess of r_0 + h_0 over k/m needed to reject (rounding guard)
_MU_TOL = 1e-7  # absolute width of the final bisection bracket on μ
_MU_MAX = 1e3  # f̄⁻¹ is 0 in double precision long before: nothing is rejected there
_TAU_MIN = 1e-300


def gaussian_inverse_blow_up(mu: float) -> InverseBlowUp:
    """f̄⁻¹(y) = Φ(Φ⁻¹(y) − μ) of the μ-GDP trade-off curve G_μ (μ ≥ 0; μ = 0 is the identity)."""
    if not isinstance(mu, numbers.Real) or isinstance(mu, bool) or not 0 <= mu < math.inf:
        raise InvalidParameterError("mu", mu, "a finite number >= 0")
    m = float(mu)

    def inverse(y: float) -> float:
        return float(special.ndtr(special.ndtri(y) - m))

    return inverse


def epsilon_dp_inverse_blow_up(epsilon: float) -> InverseBlowUp:
    """f̄⁻¹(y) = max(e^−ε y, 1 − e^ε (1 − y)) of the ε-DP (δ = 0) trade-off curve."""
    ok = isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool)
    if not ok or not 0 <= epsilon < math.inf:
        raise InvalidParameterError("epsilon", epsilon, "a finite number >= 0")
    e = float(epsilon)

    def inverse(y: float) -> float:
        return max(math.exp(-e) * y, 1 - math.exp(e) * (1 - y))

    return inverse


def _rejects(m: int, k: int, v: int, inverse: InverseBlowUp, tau: float) -> bool:
    """True when the recursion (module docstring) at τ exceeds k/m: then P[W ≥ v] < τ."""
    if v == 0:
        return False  # P[W ≥ 0] = 1
    total = k / m
    limit = total * (1 + _MARGIN)
    r = tau * v / m
    h = tau * (k - v) / m
    for i in range(v - 1, -1, -1):
        if r + h > limit:
            return True
        f = inverse(r) if r < 1 else 1.0
        if f <= h:
            break
        r += i / (k - i) * (f - h)
        h = f
    return r + h > limit


def _check_counts(m: int, guesses: int, correct: int) -> tuple[int, int, int]:
    m = check_count("m", m)
    k = check_count("guesses", guesses)
    v = check_count("correct", correct, minimum=0)
    if not k <= m:
        raise InvalidParameterError("guesses", guesses, f"an integer in [1, m={m}]")
    if not v <= k:
        raise InvalidParameterError("correct", correct, f"an integer in [0, guesses={k}]")
    return m, k, v


def fdp_tail_bound(m: int, guesses: int, correct: int, inverse_blow_up: InverseBlowUp) -> float:
    """Upper bound on P[≥ ``correct`` right out of ``guesses``] for any mechanism whose trade-off
    curve for each of ``m`` canaries is at least f, given by its inverse blow-up f̄⁻¹ (e.g.
    :func:`gaussian_inverse_blow_up`): the smallest τ the recursion of the module docstring rejects
    (to a relative 1e-9, rounded up), or 1 if none is."""
    m, k, v = _check_counts(m, guesses, correct)
    if not callable(inverse_blow_up):
        raise InvalidParameterError("inverse_blow_up", inverse_blow_up, "a callable y -> f̄⁻¹(y)")
    return _tail_bound(m, k, v, inverse_blow_up)


def _tail_bound(m: int, k: int, v: int, inverse: InverseBlowUp) -> float:
    if not _rejects(m, k, v, inverse, 1.0):
        return 1.0
    if _rejects(m, k, v, inverse, _TAU_MIN):
        return _TAU_MIN
    lo, hi = math.log(_TAU_MIN), 0.0  # log τ: not rejected at lo, rejected at hi
    while hi - lo > 1e-9:
        mid = 0.5 * (lo + hi)
        if _rejects(m, k, v, inverse, math.exp(mid)):
            hi = mid
        else:
            lo = mid
    return min(math.exp(hi), 1.0)


def one_run_fdp_p_value(m: int, guesses: int, correct: int, mu: float) -> float:
    """Upper bound on P[≥ ``correct`` right out of ``guesses``] for a μ-GDP run with ``m``
    canaries: a p-value for the hypothesis "the run is ``mu``-GDP" (module docstring)."""
    return fdp_tail_bound(m, guesses, correct, gaussian_inverse_blow_up(mu))


def one_run_fdp_mu(m: int, guesses: int, correct: int, *, alpha: float) -> float:
    """Largest μ (to ~1e-7) rejected at level ``alpha``: the one-run f-DP lower bound on μ at
    confidence 1 − ``alpha`` (0 when even μ = 0, no leakage, is not rejected)."""
    m, k, v = _check_counts(m, guesses, correct)
    ok = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)
    if not ok or not 0 < alpha < 1:
        raise InvalidParameterError("alpha", alpha, "in the open interval (0, 1)")
    return _mu_lower(m, k, v, float(alpha))


def _mu_lower(m: int, k: int, v: int, alpha: float, floor: float = 0.0) -> float:
    """The end of the interval [floor, μ_lb) of μ rejected at level α, or ``floor`` if ``floor``
    is not rejected (``floor`` is the caller's best so far: a shortcut, since the rejected μ form
    an interval from 0). The answer is always verified rejected (or is ``floor``)."""

    def rejected(mu: float) -> bool:
        return _rejects(m, k, v, gaussian_inverse_blow_up(mu), alpha)

    if not rejected(floor):
        return floor
    lo, hi = floor, max(1.0, 2 * floor)
    while rejected(hi):
        lo, hi = hi, 2 * hi
        if hi > _MU_MAX:
            return lo
    while hi - lo > _MU_TOL:
        mid = 0.5 * (lo + hi)
        if rejected(mid):
            lo = mid
        else:
            hi = mid
    return lo


def one_run_fdp_lower_bound(
    scores: ArrayLike,
    included: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    guesses: int | tuple[int, int] | None = None,
) -> LowerBound:
    """ε lower bound at ``delta`` from one run's canary ``scores`` through a μ-GDP lower bound
    (module docstring), valid if each canary's trade-off curve is Gaussian.

    Inputs as :func:`deniable.audit.bounds_one_run.one_run_lower_bound`: ``included[i]`` says
    whether canary i was trained on, each independently with probability ½; ``guesses`` is k
    (split k₊ = k − k//2, k₋ = k//2), an explicit ``(k₊, k₋)``, or ``None`` for the grid of
    guess counts at level α/G each (Bonferroni), the largest bound reported. ``delta`` must be > 0.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> included = rng.random(1000) < 0.5
    >>> scores = rng.normal(2.0 * included, 1.0)
    >>> lb = one_run_fdp_lower_bound(scores, included, delta=1e-5)
    >>> 0 < lb.details["mu_lower"] < 2.0, lb.method
    (True, 'one-run-fdp')
    """
    c = check_confidence(confidence)
    d = check_audit_delta(delta)
    if d == 0:
        raise InvalidParameterError("delta", delta, "in (0, 1) for the f-DP (GDP) route")
    found = search_guesses(
        scores,
        included,
        confidence=c,
        guesses=guesses,
        bound=lambda m, k, v, alpha, floor: _mu_lower(m, k, v, alpha, floor=floor),
    )
    best_mu = found.value
    epsilon = gaussian_epsilon(best_mu, d) if best_mu > 0 else 0.0
    p_value = _tail_bound(found.m, found.guesses, found.correct, gaussian_inverse_blow_up(best_mu))
    return LowerBound(
        epsilon=epsilon,
        delta=d,
        confidence=c,
        method="one-run-fdp",
        threshold=None,
        details={
            **found.details(),
            "mu_lower": best_mu,
            "p_value": p_value,
            "assumption": "Gaussian trade-off curve (mu-GDP) for each canary",
        },
    )
