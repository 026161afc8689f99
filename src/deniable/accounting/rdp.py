"""The Rényi DP (moments) accountant, with the improved conversion to (ε, δ).

A mechanism M is (α, ε(α))-RDP when D_α(M(D) ‖ M(D')) ≤ ε(α) for all neighbours D, D'
(Mironov 2017), where D_α(P‖Q) = log E_Q[(P/Q)^α]/(α − 1). RDP composes by addition at each
order, so the accountant evaluates the RDP curve of an event on a grid of orders α > 1, sums over
compositions, and converts once at the end:

    ε(δ) = min_α  ε(α) + log((α − 1)/α) − (log δ + log α)/(α − 1)

(Balle et al. 2020, Thm. 21; Canonne, Kamath & Steinke 2020, Prop. 12), never worse than the
classic ε(α) + log(1/δ)/(α − 1) of Mironov 2017, Prop. 3. RDP is an upper bound: for tight
numbers use the PLD accountant; this one is fast, simple and standard.

Curves of the base mechanisms (Δ is the sensitivity under the chosen relation, see
:func:`deniable.events.sensitivity_under`):

- Gaussian, noise multiplier z = σ/Δ: α/(2z²) (Mironov 2017, Prop. 7).
- Discrete Gaussian: the same, since it is Δ²/(2σ²)-zCDP (Canonne, Kamath & Steinke 2020).
- Laplace, b = scale/Δ: (1/(α−1))·log(α/(2α−1)·e^{(α−1)/b} + (α−1)/(2α−1)·e^{−α/b})
  (Mironov 2017, Prop. 6; convex in the shift, so an L1 shift is worst on one coordinate).
- k-ary randomized response: the divergence of P = (p, r, …, r) from Q = (r, p, r, …, r),
  p = e^ε/(e^ε + k − 1), r = 1/(e^ε + k − 1), in both directions equal by symmetry.
- Pure ε-DP (and discrete Laplace, ε = Δ/scale): binary randomized response with that ε, which
  every ε-DP pair is a post-processing of (Kairouz, Oh & Viswanath 2015), hence the tight bound.

Subsampling lives in :mod:`deniable.accounting.rdp_subsampled`, the best of a random number of
runs (hyperparameter tuning) in :mod:`deniable.accounting.rdp_tuning`. The interpretation of each
event type is one registered function (see ``_RULES``); adding an event type means registering
one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import special

from deniable.accounting import rdp_subsampled
from deniable.accounting.result import EpsilonResult
from deniable.errors import InvalidParameterError, UnsupportedEventError, check_delta
from deniable.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    GaussianEvent,
    LaplaceEvent,
    Neighbouring,
    NonPrivateEvent,
    NoOpEvent,
    PoissonSampledEvent,
    PrivacyEvent,
    PureDpEvent,
    RandomizedResponseEvent,
    RepeatAndSelectEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    sensitivity_under,
)

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10 for x in range(1, 100)]
    + [float(a) for a in range(11, 64)]
    + [128.0, 256.0, 512.0, 1024.0]
)
"""1.1, 1.2, …, 10.9, then 11, …, 63, 128, 256, 512, 1024 (as dp-accounting)."""

Orders = Sequence[float] | np.ndarray
_Memo = dict[tuple[object, ...], np.ndarray]
_Rule = Callable[[Any, np.ndarray, Neighbouring, _Memo], np.ndarray]
_RULES: dict[type[PrivacyEvent], _Rule] = {}
_PURE_EPSILON: dict[type[PrivacyEvent], Callable[[Any, Neighbouring], float]] = {}


# --- Public API ---------------------------------------------------------------------------------


def compute_rdp(
    event: PrivacyEvent,
    orders: Orders = DEFAULT_ORDERS,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> np.ndarray:
    """RDP ε(α) of ``event`` at each order α (> 1) under ``relation``; may contain inf."""
    return _rdp(event, _check_orders(orders), _check_relation(relation), {}).copy()


def epsilon(
    event: PrivacyEvent,
    delta: float,
    *,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    orders: Orders = DEFAULT_ORDERS,
) -> EpsilonResult:
    """The smallest ε that RDP at ``orders`` proves for ``event`` at ``delta``.

    Never above the event's pure-DP ε where it has one (the RDP curve's limit α → ∞);
    ``details`` holds the optimal ``order``, the RDP there and which ``bound`` won.
    """
    check_delta(delta)
    grid = _check_orders(orders)
    relation = _check_relation(relation)
    rdp = _rdp(event, grid, relation, {})
    eps, order = rdp_to_epsilon(grid, rdp, delta)
    at = rdp[int(np.argmax(grid == order))]
    pure = _pure_epsilon(event, relation)  # ε-DP implies (ε, δ)-DP: RDP at α = ∞
    return EpsilonResult(
        epsilon=min(eps, pure),
        delta=float(delta),
        accountant="rdp",
        relation=relation,
        details={
            "order": order,
            "rdp_at_order": float(at),
            "bound": "pure_dp" if pure < eps else "rdp",
        },
    )


def delta(
    event: PrivacyEvent,
    epsilon: float,
    *,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    orders: Orders = DEFAULT_ORDERS,
) -> float:
    """The smallest δ that RDP at ``orders`` proves for ``event`` at ``epsilon`` (0 when
    ``epsilon`` is at least the event's pure-DP ε)."""
    _check_epsilon(epsilon)
    grid = _check_orders(orders)
    relation = _check_relation(relation)
    rdp = _rdp(event, grid, relation, {})
    if epsilon >= _pure_epsilon(event, relation):
        return 0.0
    return rdp_to_delta(grid, rdp, epsilon)[0]


def rdp_to_epsilon(orders: Orders, rdp: Orders, delta: float) -> tuple[float, float]:
    """(ε, best order) from an RDP curve at ``delta``.

    ε = min_α min{ε(α) + log((α−1)/α) − (log δ + log α)/(α−1),  ε(α) + log(1/δ)/(α−1)}
    (Balle et al. 2020, Thm. 21; Mironov 2017, Prop. 3); ε = 0 at orders where
    δ ≥ (1 − e^{−ε(α)})^{1/2} (total variation ≤ that, Bretagnolle–Huber, as KL ≤ D_α).
    """
    check_delta(delta)
    grid, curve = _check_curve(orders, rdp)
    log_delta = math.log(delta)
    with np.errstate(invalid="ignore", over="ignore"):
        improved = curve + np.log1p(-1 / grid) - (log_delta + np.log(grid)) / (grid - 1)
        classic = curve - log_delta / (grid - 1)
        eps = np.minimum(improved, classic)
        eps = np.where(delta * delta >= -np.expm1(-curve), 0.0, eps)
    eps = np.maximum(np.nan_to_num(eps, nan=np.inf, posinf=np.inf), 0.0)
    best = int(np.argmin(eps))
    return float(eps[best]), float(grid[best])


def rdp_to_delta(orders: Orders, rdp: Orders, epsilon: float) -> tuple[float, float]:
    """(δ, best order) from an RDP curve at ``epsilon``, the conversion matching
    :func:`rdp_to_epsilon`: log δ = (α−1)(ε(α) − ε + log(1 − 1/α)) − log α, or the classic
    (α−1)(ε(α) − ε), or ½·log(1 − e^{−ε(α)}), whichever is smallest; δ ≤ 1."""
    _check_epsilon(epsilon)
    grid, curve = _check_curve(orders, rdp)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        improved = (grid - 1) * (curve - epsilon + np.log1p(-1 / grid)) - np.log(grid)
        classic = (grid - 1) * (curve - epsilon)
        huber = 0.5 * np.log(-np.expm1(-curve))
        log_delta = np.minimum(np.minimum(improved, classic), huber)
    log_delta = np.nan_to_num(log_delta, nan=np.inf, posinf=np.inf)
    best = int(np.argmin(log_delta))
    return float(min(math.exp(min(log_delta[best], 0.0)), 1.0)), float(grid[best])


# --- Validation ---------------------------------------------------------------------------------


def _check_orders(orders: Orders) -> np.ndarray:
    try:
        grid = np.atleast_1d(np.asarray(orders, dtype=float))
    except (TypeError, ValueError):
        raise InvalidParameterError(
            "orders", _brief(orders), "a sequence of finite numbers > 1"
        ) from None
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 1):
        raise InvalidParameterError(
            "orders", _brief(grid), "a non-empty sequence of finite numbers > 1"
        )
    return grid


def _check_curve(orders: Orders, rdp: Orders) -> tuple[np.ndarray, np.ndarray]:
    grid = _check_orders(orders)
    curve = np.atleast_1d(np.asarray(rdp, dtype=float))
    if curve.shape != grid.shape or np.any(np.isnan(curve)):
        raise InvalidParameterError(
            "rdp", _brief(curve), f"{grid.size} numbers (one per order), not nan"
        )
    return grid, np.maximum(curve, 0.0)


def _brief(values: object) -> str:
    """A one-line description of an array-like for an error message."""
    try:
        flat = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return repr(values).replace("\n", " ")[:80]
    head = ", ".join(f"{v:g}" for v in flat[:4])
    return f"[{head}{', …' if flat.size > 4 else ''}] ({flat.size} values)"


def _check_relation(relation: Neighbouring) -> Neighbouring:
    try:
        return Neighbouring(relation)
    except ValueError:
        allowed = ", ".join(r.value for r in Neighbouring)
        raise InvalidParameterError("relation", relation, f"one of {allowed}") from None


def _check_epsilon(epsilon: float) -> None:
    ok = isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool)
    if not ok or not math.isfinite(epsilon) or epsilon < 0:
        raise InvalidParameterError("epsilon", epsilon, "a finite number >= 0")


# --- Dispatch -----------------------------------------------------------------------------------


def _rule(*event_types: type[PrivacyEvent]) -> Callable[[_Rule], _Rule]:
    def register(fn: _Rule) -> _Rule:
        for event_type in event_types:
            _RULES[event_type] = fn
        return fn

    return register


def _rdp(
    event: PrivacyEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    """RDP curve of ``event``; ``memo`` shares work between repeated sub-events of one call."""
    rule = next((_RULES[c] for c in type(event).__mro__ if c in _RULES), None)
    if rule is None:
        raise UnsupportedEventError(f"the rdp accountant cannot interpret {type(event).__name__}")
    try:
        key: tuple[object, ...] | None = (event, relation, orders.tobytes())
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in memo:
        return memo[key]
    result = np.asarray(rule(event, orders, relation, memo), dtype=float)
    if key is not None:
        memo[key] = result
    return result


def _pure_epsilon(event: PrivacyEvent, relation: Neighbouring) -> float:
    """ε(∞), the pure-DP ε of ``event`` (inf when it has none or it is not known here)."""
    for c in type(event).__mro__:
        if c in _PURE_EPSILON:
            return _PURE_EPSILON[c](event, relation)
    return math.inf


def _gaussian_noise_multiplier(event: PrivacyEvent, relation: Neighbouring) -> float | None:
    """z of the single Gaussian equivalent to a composition of Gaussians, else None.

    Gaussians with noise multipliers z_i on the same data are one Gaussian with
    z = (Σ 1/z_i²)^{−1/2} (Mironov, Talwar & Zhang 2019, §3; dp-accounting does the same).
    """
    if isinstance(event, GaussianEvent):
        return event.noise_multiplier(relation)
    if isinstance(event, SelfComposedEvent):
        inner = _gaussian_noise_multiplier(event.event, relation)
        return None if inner is None else inner / math.sqrt(event.count)
    if isinstance(event, ComposedEvent) and event.events:
        parts = [_gaussian_noise_multiplier(e, relation) for e in event.events]
        if any(p is None for p in parts):
            return None
        return 1 / math.sqrt(sum(1 / (p * p) for p in parts if p is not None))
    return None


# --- Rules: base mechanisms ---------------------------------------------------------------------


@_rule(NoOpEvent)
def _no_op(event: NoOpEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo) -> np.ndarray:
    return np.zeros_like(orders)


@_rule(NonPrivateEvent)
def _non_private(
    event: NonPrivateEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    return np.full_like(orders, np.inf)


@_rule(GaussianEvent)
def _gaussian(
    event: GaussianEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    z = event.noise_multiplier(relation)
    return orders / (2 * z * z)


@_rule(DiscreteGaussianEvent)
def _discrete_gaussian(
    event: DiscreteGaussianEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    z = event.sigma / sensitivity_under(event, relation)
    return orders / (2 * z * z)


@_rule(LaplaceEvent)
def _laplace(
    event: LaplaceEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    eps = sensitivity_under(event, relation) / event.scale
    if event.dimension > 1:
        # Mironov's formula is for one coordinate; a vector release is only known to be ε-DP,
        # and binary randomized response at ε bounds every ε-DP mechanism.
        return randomized_response_rdp(eps, 2, orders)
    return laplace_rdp(eps, orders)


@_rule(DiscreteLaplaceEvent)
def _discrete_laplace(
    event: DiscreteLaplaceEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    return randomized_response_rdp(sensitivity_under(event, relation) / event.scale, 2, orders)


@_rule(RandomizedResponseEvent)
def _randomized_response(
    event: RandomizedResponseEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    return randomized_response_rdp(event.epsilon, event.num_buckets, orders)


@_rule(PureDpEvent)
def _pure_dp(
    event: PureDpEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    return randomized_response_rdp(event.epsilon, 2, orders)


def laplace_rdp(eps: float, orders: np.ndarray) -> np.ndarray:
    """Exact RDP of the Laplace mechanism with ε = Δ/b (Mironov 2017, Prop. 6), written as
    ε + log(1 + (α−1)/(2α−1)·(e^{−(2α−1)ε} − 1))/(α − 1) to stay accurate near α = 1."""
    a = np.asarray(orders, dtype=float)
    return np.asarray(eps + np.log1p((a - 1) * np.expm1((1 - 2 * a) * eps) / (2 * a - 1)) / (a - 1))


def randomized_response_rdp(eps: float, k: int, orders: np.ndarray) -> np.ndarray:
    """Exact RDP of k-ary randomized response with parameter ε, capped at ε.

    With y = (α−1)ε: e^{(α−1)D_α} = p·e^{y} + r·e^{−y} + (k−2)·r = 1 + p·(e^y − 1) + r·(e^{−y} − 1).
    """
    a = np.asarray(orders, dtype=float)
    log_r = -float(np.logaddexp(eps, math.log(k - 1)))
    p, r = math.exp(eps + log_r), math.exp(log_r)
    y = (a - 1) * eps
    small = np.log1p(p * np.expm1(np.minimum(y, 1.0)) + r * np.expm1(-np.minimum(y, 1.0)))
    parts = [eps + log_r + y, log_r - y]
    if k > 2:
        parts.append(np.full_like(y, math.log(k - 2) + log_r))
    large = special.logsumexp(np.stack(parts), axis=0)
    return np.minimum(np.where(y <= 1.0, small, large) / (a - 1), eps)


# --- Rules: combinators -------------------------------------------------------------------------


@_rule(ComposedEvent)
def _composed(
    event: ComposedEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    total = np.zeros_like(orders)
    for sub in event.events:
        total = total + _rdp(sub, orders, relation, memo)
    return total


@_rule(SelfComposedEvent)
def _self_composed(
    event: SelfComposedEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    return event.count * _rdp(event.event, orders, relation, memo)


@_rule(PoissonSampledEvent)
def _poisson(
    event: PoissonSampledEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    if relation is not Neighbouring.ADD_REMOVE:
        raise UnsupportedEventError(
            "PoissonSampledEvent: Poisson sampling's amplification is stated for add/remove "
            "neighbours; use SampledWithoutReplacementEvent for replace-one, or account with "
            "relation=add_remove"
        )
    q = event.sample_rate
    if q == 1.0:
        return _rdp(event.event, orders, relation, memo)
    z = _gaussian_noise_multiplier(event.event, relation)
    if z is not None:
        return rdp_subsampled.poisson_gaussian_rdp(q, z, orders)
    return rdp_subsampled.poisson_general_rdp(
        q, orders, lambda a: _rdp(event.event, a, relation, memo)
    )


@_rule(SampledWithoutReplacementEvent)
def _without_replacement(
    event: SampledWithoutReplacementEvent,
    orders: np.ndarray,
    relation: Neighbouring,
    memo: _Memo,
) -> np.ndarray:
    if relation is not Neighbouring.REPLACE_ONE:
        raise UnsupportedEventError(
            "SampledWithoutReplacementEvent: amplification by sampling without replacement is "
            "stated for replace-one neighbours (a fixed dataset size); account with "
            "relation=replace_one, or use PoissonSampledEvent for add/remove"
        )
    gamma = event.sample_size / event.source_size
    if gamma == 1.0:
        return _rdp(event.event, orders, relation, memo)
    return rdp_subsampled.without_replacement_rdp(
        gamma,
        orders,
        lambda a: _rdp(event.event, a, relation, memo),
        _pure_epsilon(event.event, relation),
        _gaussian_noise_multiplier(event.event, relation),
    )


@_rule(RepeatAndSelectEvent)
def _repeat_and_select(
    event: RepeatAndSelectEvent, orders: np.ndarray, relation: Neighbouring, memo: _Memo
) -> np.ndarray:
    from deniable.accounting import rdp_tuning  # imported here: it builds on this module

    grid = np.union1d(orders, DEFAULT_ORDERS)  # the auxiliary orders of the bounds
    curve = rdp_tuning.repeat_and_select_rdp(
        grid,
        _rdp(event.event, grid, relation, memo),
        event.mean_repetitions,
        event.shape,
        pure_epsilon=_pure_epsilon(event.event, relation),
    )
    return curve[np.searchsorted(grid, orders)]


def _repeat_and_select_pure(event: RepeatAndSelectEvent, relation: Neighbouring) -> float:
    from deniable.accounting import rdp_tuning

    return rdp_tuning.repeat_and_select_pure_epsilon(
        _pure_epsilon(event.event, relation), event.mean_repetitions, event.shape
    )


# --- Pure-DP ε(∞), used by sampling without replacement -------------------------------------------

_PURE_EPSILON.update(
    {
        NoOpEvent: lambda e, rel: 0.0,
        LaplaceEvent: lambda e, rel: sensitivity_under(e, rel) / e.scale,
        DiscreteLaplaceEvent: lambda e, rel: sensitivity_under(e, rel) / e.scale,
        RandomizedResponseEvent: lambda e, rel: e.epsilon,
        PureDpEvent: lambda e, rel: e.epsilon,
        ComposedEvent: lambda e, rel: sum(_pure_epsilon(s, rel) for s in e.events),
        SelfComposedEvent: lambda e, rel: e.count * _pure_epsilon(e.event, rel),
        RepeatAndSelectEvent: _repeat_and_select_pure,
    }
)


__all__ = [
    "DEFAULT_ORDERS",
    "compute_rdp",
    "delta",
    "epsilon",
    "laplace_rdp",
    "randomized_response_rdp",
    "rdp_to_delta",
    "rdp_to_epsilon",
]
