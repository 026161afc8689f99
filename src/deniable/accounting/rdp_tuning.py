"""The privacy cost of hyperparameter tuning: a private run repeated a random number of times,
only the best run released (Papernot & Steinke 2022, "Hyperparameter tuning with Rényi
differential privacy", ICLR; arXiv:2110.03620).

Tuning is not free: every candidate run reads the private data, and which run is best depends on
all of them. Papernot & Steinke bound the Rényi DP of A = "run Q K times, output the best run"
(:class:`~deniable.events.RepeatAndSelectEvent`) from the RDP curve ε(·) of one run Q, when the
number of runs K is random:

- K truncated negative binomial D_{η,γ}, η ≥ 0, γ ∈ (0, 1) (their Def. 1):
  P(K = k) = (1 − γ)^k / (γ^{−η} − 1) · Π_{ℓ=0}^{k−1} (ℓ + η)/(ℓ + 1) for k ≥ 1, i.e. a negative
  binomial conditioned on K ≥ 1 (η = 1 geometric; η → 0 logarithmic, P(K = k) ∝ (1 − γ)^k/k),
  with mean E[K] = η(1 − γ)/(γ(1 − γ^η)) (η = 0: (1 − γ)/(γ·log(1/γ))); the paper also allows
  −1 < η < 0, which we (like dp-accounting) do not. Their Theorem 2: for
  every λ > 1 and λ̂ ≥ 1,

      ε_A(λ) ≤ ε(λ) + (1 + η)(1 − 1/λ̂)·ε(λ̂) + (1 + η)·log(1/γ)/λ̂ + log(E[K])/(λ − 1).

  The auxiliary order λ̂ is optimised over the order grid, and over λ̂ → ∞ where Q is ε∞-DP (the
  term tends to (1 + η)·ε∞; with λ → ∞ too this is their Cor. 3, A is (2 + η)·ε∞-DP). γ is
  found from the requested mean by bisection and rounded down (a larger mean, a valid bound).
  A mean of exactly 1 forces K = 1, so A = Q (Theorem 2 needs γ < 1 and is not used).
- K Poisson with mean μ (their Theorem 6): if Q is also (ε̂, δ̂)-DP with e^ε̂ ≤ 1 + 1/(λ − 1),

      ε_A(λ) ≤ ε(λ) + μ·δ̂ + log(μ)/(λ − 1).

  We take ε̂ = log(1 + 1/(λ − 1)) and δ̂ = δ(ε̂) converted from Q's RDP curve as in
  :func:`~deniable.accounting.rdp.rdp_to_delta`, or, when Q is ε∞-DP, binary randomized
  response's (e^ε∞ − e^ε̂)₊/(1 + e^ε∞) if smaller (0 for ε̂ ≥ ε∞). K = 0 releases nothing.

Either bound is then made non-decreasing in the order (RDP is: D_λ ≤ D_λ' for λ ≤ λ') by taking
at each order the smallest bound at that or any higher order, as dp-accounting does for the
negative binomial (``_compute_rdp_repeat_and_select``, which this follows; it omits the step for
Poisson, where ours can only be lower). Auxiliary orders: the accountant's orders together with
:data:`~deniable.accounting.rdp.DEFAULT_ORDERS`.

The theorems require K random; for a fixed number of runs whose models might all be released, the
cost is their composition, :func:`sweep_epsilon`. Each run must draw its hyperparameters from a
fixed distribution (random search) and report its score as part of its private output;
``run_event`` must bound every candidate (the most expensive one).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import replace

import numpy as np

from deniable import accounting
from deniable.accounting import rdp
from deniable.accounting.result import EpsilonResult
from deniable.errors import InvalidParameterError, check_count
from deniable.events import (
    Neighbouring,
    PrivacyEvent,
    RepeatAndSelectEvent,
    SelfComposedEvent,
    _repetition_shape,
)

GAMMA_TOLERANCE = 1e-9
"""Relative accuracy of the negative binomial's γ found from its mean (as dp-accounting)."""


# --- The distribution of the number of runs -----------------------------------------------------


def truncated_negative_binomial_mean(gamma: float, shape: float) -> float:
    """E[K] of the truncated negative binomial D_{η,γ} (Papernot & Steinke 2022, Def. 1)."""
    if not 0 < gamma <= 1:
        raise InvalidParameterError("gamma", gamma, "in (0, 1]")
    eta = _shape(shape)
    if eta is None:
        raise InvalidParameterError("shape", shape, "a finite number >= 0")
    if gamma == 1:
        return 1.0
    log_g = math.log(gamma)
    if eta == 1:
        return 1 / gamma
    if eta == 0:
        return -math.expm1(log_g) / (gamma * -log_g)
    return eta * -math.expm1(log_g) / (gamma * -math.expm1(eta * log_g))


def truncated_negative_binomial_gamma(shape: float, mean: float) -> float:
    """The γ of D_{η,γ} with E[K] = ``mean``, rounded down (so E[K] ≥ ``mean``): 1/mean for the
    geometric, else bisection to relative accuracy :data:`GAMMA_TOLERANCE`."""
    eta = _shape(shape)
    if eta is None:
        raise InvalidParameterError("shape", shape, "a finite number >= 0")
    mean = _check_mean(mean)
    if mean == 1:
        return 1.0
    if eta == 1:
        return 1 / mean
    # E[K] decreases in γ; max(η, 1/log(1/γ))·(1/γ − 1) ≤ E[K] ≤ 2(η + 1)/γ bounds γ above.
    low, high = 0.0, min(1.0, 2 * (eta + 1) / mean)
    while high > low * (1 + GAMMA_TOLERANCE):
        mid = (low + high) / 2
        if truncated_negative_binomial_mean(mid, eta) < mean:
            high = mid
        else:
            low = mid
    return low


def draw_runs(
    mean_runs: float, shape: float | str | None = None, *, rng: np.random.Generator | None = None
) -> int:
    """Draw the number of runs K of a tuning sweep from the distribution that
    :func:`tuning_epsilon` accounts (Poisson for ``shape`` None, else D_{η,γ}).

    Draw K *before* looking at any run, and run exactly K candidates: stopping early because a
    run looked good is a different (unaccounted) procedure. ``rng`` defaults to OS entropy.
    """
    mean = _check_mean(mean_runs)
    eta = _shape(shape)
    gen = rng if rng is not None else np.random.default_rng()
    if eta is None:
        return int(gen.poisson(mean))
    gamma = truncated_negative_binomial_gamma(eta, mean)
    if gamma == 1:
        return 1
    # Inverse CDF from P(K = 1) by P(K = k + 1) = P(K = k)·(1 − γ)(k + η)/(k + 1): O(K) steps.
    log_g = math.log(gamma)
    if eta == 0:
        p = -math.expm1(log_g) / -log_g
    else:
        p = eta * -math.expm1(log_g) * math.exp(eta * log_g) / -math.expm1(eta * log_g)
    u, k, cdf = float(gen.random()), 1, p
    while u >= cdf and p > 0:
        p *= (1 - gamma) * (k + eta) / (k + 1)
        k += 1
        cdf += p
    return k


# --- The RDP bounds -----------------------------------------------------------------------------


def repeat_and_select_rdp(
    orders: rdp.Orders,
    run_rdp: rdp.Orders,
    mean: float,
    shape: float | str | None = None,
    *,
    pure_epsilon: float = math.inf,
) -> np.ndarray:
    """RDP at ``orders`` of the best of K runs, from the RDP ``run_rdp`` of one run at the same
    ``orders`` (which are also the auxiliary orders), K with mean ``mean`` and ``shape`` (None:
    Poisson, Theorem 6; η ≥ 0: truncated negative binomial, Theorem 2; see the module
    docstring). ``pure_epsilon``: the run's pure-DP ε, if it has one."""
    grid, curve = _check_curve(orders, run_rdp)
    mean = _check_mean(mean)
    eta = _shape(shape)
    pure = float(pure_epsilon)
    log_mean_term = math.log(mean) / (grid - 1)
    if eta is None:  # Poisson: Theorem 6 with e^ε̂ = 1 + 1/(λ − 1).
        eps_hat = np.log1p(1 / (grid - 1))
        delta_hat = np.array([_delta(grid, curve, float(e), pure) for e in eps_hat])
        bound = curve + mean * delta_hat + log_mean_term
    elif mean == 1:  # K = 1: the run itself.
        return curve.copy()
    else:  # Truncated negative binomial: Theorem 2, optimised over λ̂ (and λ̂ → ∞).
        gamma = truncated_negative_binomial_gamma(eta, mean)
        aux = (1 - 1 / grid) * curve - math.log(gamma) / grid
        best = min(float(np.min(aux)), pure)
        mean_k = truncated_negative_binomial_mean(gamma, eta)  # >= mean: gamma rounded down
        bound = curve + math.log(mean_k) / (grid - 1) + (1 + eta) * best
    return _non_decreasing(grid, bound)


def repeat_and_select_pure_epsilon(run_pure_epsilon: float, mean: float, shape: object) -> float:
    """Pure-DP ε of the best of K ε∞-DP runs: (2 + η)·ε∞ for the truncated negative binomial
    (Papernot & Steinke 2022, Cor. 3; ε∞ when the mean is 1), none (inf) known for Poisson."""
    eta = _shape(shape)
    if eta is None:
        return math.inf
    if _check_mean(mean) == 1:
        return run_pure_epsilon
    return (2 + eta) * run_pure_epsilon


def _delta(grid: np.ndarray, curve: np.ndarray, eps: float, pure: float) -> float:
    """δ(ε) of the run: from its RDP curve, and, when it is ε∞-DP, binary randomized response's
    (e^ε∞ − e^ε)₊/(1 + e^ε∞), which dominates every ε∞-DP mechanism (Kairouz, Oh & Viswanath
    2015)."""
    from_rdp = rdp.rdp_to_delta(grid, curve, eps)[0]
    if not math.isfinite(pure):
        return from_rdp
    return min(from_rdp, max(0.0, -math.expm1(eps - pure) / (1 + math.exp(-pure))))


def _non_decreasing(grid: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """At each order, the smallest bound at that order or a higher one."""
    order = np.argsort(grid, kind="stable")
    envelope = np.minimum.accumulate(bound[order][::-1])[::-1]
    out = np.empty_like(bound)
    out[order] = envelope
    return out


# --- What a sweep costs -------------------------------------------------------------------------


def tuning_epsilon(
    run_event: PrivacyEvent,
    delta: float,
    *,
    mean_runs: float,
    shape: float | str | None = None,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    orders: rdp.Orders = rdp.DEFAULT_ORDERS,
) -> EpsilonResult:
    """(ε, ``delta``) of tuning by random search: ``run_event`` repeated K times, K drawn with
    :func:`draw_runs` (mean ``mean_runs``; ``shape`` None for Poisson, else the truncated
    negative binomial's η: 0 logarithmic, 1 geometric), only the best run released.

    RDP accountant only (no PLD bound is known). ``details`` adds ``run_epsilon`` (one run at
    the same δ), ``mean_runs`` and ``shape``. Compare with :func:`sweep_epsilon`.
    """
    event = RepeatAndSelectEvent(run_event, mean_runs, shape)
    result = rdp.epsilon(event, delta, relation=relation, orders=orders)
    run = rdp.epsilon(run_event, delta, relation=relation, orders=orders)
    eta = _shape(event.shape)
    details: dict[str, float | int | str] = {
        **result.details,
        "run_epsilon": run.epsilon,
        "mean_runs": float(mean_runs),
        "shape": "poisson" if eta is None else eta,
    }
    return replace(result, details=details)


def sweep_epsilon(
    run_event: PrivacyEvent,
    delta: float,
    runs: int,
    *,
    accountant: str = "rdp",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> EpsilonResult:
    """(ε, ``delta``) of ``runs`` runs composed: what a fixed grid of ``runs`` trials costs when
    every trained model might be released (or the choice among a fixed number is not randomised
    as :func:`tuning_epsilon` needs). ``accountant`` "rdp" compares like with like; "pld" gives
    the composition's tighter value."""
    check_count("runs", runs)
    result = accounting.epsilon(
        SelfComposedEvent(run_event, runs), delta, accountant=accountant, relation=relation
    )
    return replace(result, details={**result.details, "runs": runs})


# --- Validation ---------------------------------------------------------------------------------


def _check_mean(mean: float) -> float:
    ok = isinstance(mean, numbers.Real) and not isinstance(mean, bool)
    if not ok or not math.isfinite(mean) or mean < 1:
        raise InvalidParameterError("mean_runs", mean, "a finite number >= 1")
    return float(mean)


def _check_curve(orders: rdp.Orders, run_rdp: rdp.Orders) -> tuple[np.ndarray, np.ndarray]:
    grid = np.atleast_1d(np.asarray(orders, dtype=float))
    curve = np.atleast_1d(np.asarray(run_rdp, dtype=float))
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 1):
        raise InvalidParameterError("orders", f"{grid.size} values", "finite numbers > 1")
    if curve.shape != grid.shape or np.any(np.isnan(curve)):
        raise InvalidParameterError(
            "run_rdp", f"{curve.size} values", f"{grid.size} numbers (one per order), not nan"
        )
    return grid, np.maximum(curve, 0.0)


def _shape(shape: object) -> float | None:
    return _repetition_shape(shape)


__all__ = [
    "GAMMA_TOLERANCE",
    "draw_runs",
    "repeat_and_select_pure_epsilon",
    "repeat_and_select_rdp",
    "sweep_epsilon",
    "truncated_negative_binomial_gamma",
    "truncated_negative_binomial_mean",
    "tuning_epsilon",
]
