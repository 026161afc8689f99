"""One-run auditing: an ε lower bound from m canaries in a single training run.

Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1) training run" (NeurIPS). Each of
m canaries is included in the training data independently with probability ½ (the caller must
have randomised it so). The auditor, seeing only the run's output, guesses "in" for the k₊
highest-scoring canaries and "out" for the k₋ lowest-scoring ones and abstains on the rest. If the
run is (ε, δ)-DP with respect to each canary (add/remove-one), the number W of correct guesses out
of k = k₊ + k₋ satisfies, for every v (their main theorem for (ε, δ)-DP, computed as in their
Appendix D),

    P[W ≥ v] ≤ β + 2·m·δ·a,   β = P[Bin(k, q) ≥ v],   q = e^ε/(1 + e^ε),
    a = max_{1 ≤ i ≤ v} P[v − i ≤ Bin(k, q) < v] / i.

With pure ε-DP (δ = 0) this says W is stochastically dominated by Bin(k, q), the accuracy of
ε-randomised response. Given r correct guesses, the (1 − α)-confidence lower bound is the largest
ε whose p-value p(ε) (the right-hand side at v = r, capped at 1) is still below α. p(ε) increases
with ε (checked numerically in the tests), so the set of rejected ε is an interval [0, ε_lb) and
ε_lb is found by root finding; any ε reported has p(ε) < α verified.

When ``guesses`` is not given, the bound is computed for each guess count on a grid (balanced
k₊ = k₋ up to rounding, k ∈ {1, 2, 5, 10, 20, 30, 50, 75, 100} % of m) at level α/G each, where G
is the grid size (Bonferroni), and the largest is reported: valid for the maximum.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

from deniable.audit.bounds_binomial import check_audit_delta, check_confidence
from deniable.audit.bounds_result import LowerBound
from deniable.audit.metrics import validate_scores
from deniable.errors import InvalidParameterError, check_count

GUESS_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
_XTOL = 1e-9


def one_run_p_value(m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[≥ ``correct`` right out of ``guesses``] for an (ε, δ)-DP run with ``m``
    canaries (module docstring); a p-value for the hypothesis "the run is (ε, δ)-DP"."""
    m = check_count("m", m)
    k = check_count("guesses", guesses)
    v = check_count("correct", correct, minimum=0)
    if not k <= m:
        raise InvalidParameterError("guesses", guesses, f"an integer in [1, m={m}]")
    if not v <= k:
        raise InvalidParameterError("correct", correct, f"an integer in [0, guesses={k}]")
    if not isinstance(epsilon, numbers.Real) or not epsilon >= 0:
        raise InvalidParameterError("epsilon", epsilon, "a number >= 0")
    return _p_value(m, k, v, float(epsilon), check_audit_delta(delta))


def _p_value(m: int, k: int, v: int, epsilon: float, delta: float) -> float:
    return _PValue(m, k, v, delta)(epsilon)


class _PValue:
    """p(ε) for fixed (m, k, v, δ), with the log binomial coefficients computed once."""

    def __init__(self, m: int, k: int, v: int, delta: float) -> None:
        self.k, self.v, self.weight = k, v, 2 * m * delta
        j = np.arange(v - 1, -1, -1, dtype=np.float64)  # v − 1, v − 2, ..., 0
        self.j = j
        self.log_choose = (
            special.gammaln(k + 1) - special.gammaln(j + 1) - special.gammaln(k - j + 1)
        )
        self.steps = np.arange(1, v + 1, dtype=np.float64)

    def __call__(self, epsilon: float) -> float:
        k, v = self.k, self.v
        if v == 0:
            return 1.0
        q = float(special.expit(epsilon))
        beta = float(special.bdtrc(v - 1, k, q))  # P[Bin(k, q) ≥ v]
        if self.weight == 0:
            return min(beta, 1.0)
        log_q, log_1q = special.log_expit(epsilon), special.log_expit(-epsilon)
        pmf = np.exp(self.log_choose + self.j * log_q + (k - self.j) * log_1q)
        # P[v − i ≤ Bin < v] for i = 1..v: running sums of the pmf at v − 1, v − 2, ..., 0.
        a = float(np.max(np.cumsum(pmf) / self.steps))
        return min(beta + self.weight * a, 1.0)


def one_run_epsilon(m: int, guesses: int, correct: int, *, delta: float, alpha: float) -> float:
    """Largest ε (to ~1e-8) with p-value < ``alpha``: the one-run lower bound at 1 − ``alpha``."""
    one_run_p_value(m, guesses, correct, 0.0, delta)  # checks the arguments
    if not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise InvalidParameterError("alpha", alpha, "in the open interval (0, 1)")
    return _epsilon(_PValue(m, guesses, correct, float(delta)), float(alpha))


def _epsilon(p: _PValue, alpha: float, floor: float = 0.0) -> float:
    """The end of the interval [floor, ε_lb) of ε with p(ε) < α, or ``floor`` if p(floor) ≥ α
    (``floor`` is the caller's best so far: a shortcut, since p increases with ε). The answer
    always has p < α verified."""
    if p(floor) >= alpha:
        return floor
    lo, hi = floor, max(1.0, 2 * floor)
    while p(hi) < alpha:
        lo, hi = hi, 2 * hi
        if hi > 1e3:  # q == 1 in double precision long before: p = 1 there
            return lo
    root = float(optimize.brentq(lambda e: p(e) - alpha, lo, hi, xtol=_XTOL, rtol=1e-12))
    for candidate in (root, root - 2 * _XTOL, root - 1e-6):
        if lo <= candidate and p(candidate) < alpha:
            return candidate
    return lo


def one_run_lower_bound(
    scores: ArrayLike,
    included: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    guesses: int | tuple[int, int] | None = None,
) -> LowerBound:
    """ε lower bound at ``delta`` from one run's canary ``scores`` (higher = more likely in).

    ``included[i]`` says whether canary i was trained on; each must have been included
    independently with probability ½, and m = ``len(scores)`` counts all of them. ``guesses`` is
    k (split k₊ = k − k//2 "in" and k₋ = k//2 "out"), an explicit ``(k₊, k₋)``, or ``None`` for
    the Bonferroni-corrected grid of the module docstring. Tied scores are ordered by index.

    >>> rng = np.random.default_rng(0)
    >>> included = rng.random(1000) < 0.5
    >>> scores = rng.normal(4.0 * included, 1.0)
    >>> lb = one_run_lower_bound(scores, included, delta=1e-5)
    >>> lb.epsilon > 1.0, lb.details["selection"]
    (True, 'bonferroni over 9 guess counts')
    """
    c = check_confidence(confidence)
    d = check_audit_delta(delta)
    found = search_guesses(
        scores,
        included,
        confidence=c,
        guesses=guesses,
        bound=lambda m, k, v, alpha, floor: _epsilon(_PValue(m, k, v, d), alpha, floor=floor),
    )
    return LowerBound(
        epsilon=found.value,
        delta=d,
        confidence=c,
        method="one-run",
        threshold=None,
        details={
            **found.details(),
            "p_value": _p_value(found.m, found.guesses, found.correct, found.value, d),
        },
    )


GuessBound = Callable[[int, int, int, float, float], float]
"""``bound(m, k, correct, alpha, floor)``: the largest parameter (ε, or μ) rejected at level
``alpha`` by k guesses of which ``correct`` are right among m canaries; at least ``floor``."""


@dataclass(frozen=True)
class GuessSearch:
    """The best guess count of a one-run audit and what it gave."""

    value: float
    guesses_in: int
    guesses_out: int
    correct: int
    m: int
    selection: str
    alpha: float

    @property
    def guesses(self) -> int:
        return self.guesses_in + self.guesses_out

    def details(self) -> dict[str, float | int | str]:
        return {
            "m": self.m,
            "guesses_in": self.guesses_in,
            "guesses_out": self.guesses_out,
            "guesses": self.guesses,
            "correct": self.correct,
            "selection": self.selection,
            "per_test_alpha": self.alpha,
        }


def search_guesses(
    scores: ArrayLike,
    included: ArrayLike,
    *,
    confidence: float,
    guesses: int | tuple[int, int] | None,
    bound: GuessBound,
) -> GuessSearch:
    """Guess "in" for the k₊ highest and "out" for the k₋ lowest scores, for the given guess
    count or each of the default grid (Bonferroni: level (1 − confidence)/G each), and keep the
    count whose ``bound`` is largest. Shared by the Steinke and the f-DP one-run bounds."""
    s, inc = validate_scores(scores, included, labels="included")
    m = s.size
    inc_sorted = inc[np.argsort(-s, kind="stable")]
    if guesses is None:
        grid = _default_grid(m)
        selection = f"bonferroni over {len(grid)} guess counts"
    else:
        grid = [_check_guesses(guesses, m)]
        selection = "fixed guesses"
    alpha = (1 - confidence) / len(grid)
    best_value, best = 0.0, grid[-1]
    for k_in, k_out in grid:
        value = bound(m, k_in + k_out, _correct(inc_sorted, k_in, k_out), alpha, best_value)
        if value > best_value:
            best_value, best = value, (k_in, k_out)
    k_in, k_out = best
    correct = _correct(inc_sorted, k_in, k_out)
    return GuessSearch(best_value, k_in, k_out, correct, m, selection, alpha)


def _correct(inc_sorted: np.ndarray, k_in: int, k_out: int) -> int:
    """Right guesses: included among the top ``k_in`` plus excluded among the bottom ``k_out``."""
    m = inc_sorted.size
    right_in = int(np.count_nonzero(inc_sorted[:k_in]))
    right_out = int(np.count_nonzero(~inc_sorted[m - k_out :])) if k_out else 0
    return right_in + right_out


def _check_guesses(guesses: int | tuple[int, int], m: int) -> tuple[int, int]:
    allowed = f"an integer in [1, m={m}] or a pair (k_in, k_out) of counts >= 0 summing to <= m"
    if isinstance(guesses, tuple) and len(guesses) == 2:
        k_in = check_count("guesses[0]", guesses[0], minimum=0)
        k_out = check_count("guesses[1]", guesses[1], minimum=0)
    elif isinstance(guesses, numbers.Integral) and not isinstance(guesses, bool):
        k = int(guesses)
        k_in, k_out = k - k // 2, k // 2
    else:
        raise InvalidParameterError("guesses", guesses, allowed)
    if not 1 <= k_in + k_out <= m:
        raise InvalidParameterError("guesses", guesses, allowed)
    return k_in, k_out


def _default_grid(m: int) -> list[tuple[int, int]]:
    totals = sorted({min(m, max(1, math.ceil(f * m))) for f in GUESS_FRACTIONS})
    return [(k - k // 2, k // 2) for k in totals]
