"""The tight accountant: privacy loss distributions (PLD), composed by FFT.

Method (an upper bound at every step, so the ε it reports is a guarantee):

1. Each mechanism's privacy loss L (see :mod:`deniable.accounting.pld_losses`) is put on the grid
   {j·h} by *connecting the dots* (Doroshenko, Ghazi, Kamath, Kumar & Manurangsi 2022): the
   hockey-stick curve δ(ε), convex in x = e^ε, is replaced by its chords between grid points,
   which lie above it. Equivalently, each grid bin's Q-mass is split between its two end points
   linearly in e^L. The result dominates the mechanism and has the same total mass.
2. Composition of T mechanisms is the convolution of their loss distributions. It is computed as
   one FFT of size N per mechanism, raised to the power T, and one inverse FFT (as in the PRV
   accountant of Gopi, Lee & Wutschitz 2021). Circular convolution folds the distribution modulo
   N grid points, so the window of N points is placed by Chernoff bounds computed from the
   discretised losses themselves: outside it lies at most ``TAIL_BOUND`` of the mass on each
   side, and that mass is added to δ.
3. δ(ε) = Σ_y pmf(y)·(1 − e^{ε−y})₊ + mass at infinity + tail bounds; ε(δ) solves it exactly
   between grid points. For add/remove-one both directions are composed and the worse is taken.

Neighbouring relation: add/remove-one by default; replace-one uses each event's replace-one
sensitivity. Sampling without replacement and the best of a random number of runs
(:class:`~deniable.events.RepeatAndSelectEvent`) are not handled here (use ``rdp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft, special

from deniable.accounting import pld_losses as losses
from deniable.accounting.result import EpsilonResult
from deniable.errors import DeniableError, UnsupportedEventError, check_delta, check_positive
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

DEFAULT_INTERVAL = 1e-4
TAIL_BOUND = 1e-15
MAX_GRID = 1 << 25  # about 33 M points: beyond this the user should coarsen the grid.

Loss = losses.ContinuousLoss | losses.AtomLoss


@dataclass(frozen=True)
class DiscretePLD:
    """A privacy loss distribution on the grid {j·h}: P-mass ``pmf[i]`` at loss
    (``offset`` + i)·h, and ``infinity_mass`` at loss +∞."""

    offset: int
    pmf: np.ndarray
    infinity_mass: float
    interval: float

    def losses(self) -> np.ndarray:
        return (self.offset + np.arange(self.pmf.size)) * self.interval


# ----------------------------------------------------------------------------- discretisation


def discretize(loss: Loss, interval: float) -> DiscretePLD:
    """Connect-the-dots discretisation of one direction of a mechanism's privacy loss."""
    if isinstance(loss, losses.AtomLoss):
        return _discretize_atoms(loss, interval)
    return _discretize_continuous(loss, interval)


def _discretize_continuous(loss: losses.ContinuousLoss, h: float) -> DiscretePLD:
    lo, hi = loss.support()
    hi = min(hi, 700.0)  # e^700 is near the float limit; mass above goes to +∞ (pessimistic)
    j_lo, j_hi = math.floor(lo / h) - 1, math.ceil(hi / h) + 1
    _check_grid(j_hi - j_lo + 1, h)
    y = np.arange(j_lo, j_hi + 1) * h
    sf_p, sf_q = loss.survival(y)
    p_bin = np.clip(sf_p[:-1] - sf_p[1:], 0.0, None)  # P(y_j < L <= y_{j+1})
    q_bin = np.clip(sf_q[:-1] - sf_q[1:], 0.0, None)
    x = np.exp(y)
    # R_j = P(bin) − e^{y_j} Q(bin) = E_Q[(e^L − e^{y_j}); bin] >= 0: the part of the bin's
    # mass that goes to the right end point; the rest goes to the left end point.
    r = np.clip(p_bin - x[:-1] * q_bin, 0.0, None)
    r = np.minimum(r, p_bin)
    pmf = np.zeros(y.size)
    pmf[1:] += r / -math.expm1(-h)
    pmf[:-1] += np.clip(x[:-1] * q_bin - r / math.expm1(h), 0.0, None)
    pmf[0] += 1.0 - sf_p[0]  # P-mass below the grid moves up to its first point
    top_q = x[-1] * sf_q[-1]
    pmf[-1] += min(top_q, sf_p[-1])
    infinity = max(0.0, float(sf_p[-1] - top_q))
    return DiscretePLD(j_lo, pmf, infinity, h)


def _discretize_atoms(loss: losses.AtomLoss, h: float) -> DiscretePLD:
    finite = np.isfinite(loss.losses) & (loss.probs > 0)
    ell, p = loss.losses[finite], loss.probs[finite]
    if ell.size == 0:
        return DiscretePLD(0, np.zeros(1), float(min(1.0, loss.infinity_mass)), h)
    k = np.ceil(ell / h - 1e-9).astype(np.int64)  # y_{k-1} < ell <= y_k
    d = np.maximum(k * h - ell, 0.0)
    right = p * -np.expm1(-(h - d)) / -math.expm1(-h)
    left = p - right
    offset = int(k.min()) - 1
    size = int(k.max()) - offset + 1
    _check_grid(size, h)
    pmf = np.bincount(k - offset, weights=right, minlength=size)
    pmf += np.bincount(k - 1 - offset, weights=left, minlength=size)
    return DiscretePLD(offset, pmf, float(loss.infinity_mass), h)


def _check_grid(points: int, h: float) -> None:
    if points > MAX_GRID:
        raise DeniableError(
            f"the PLD grid would need {points} points at value interval {h:g}; "
            "use a larger interval or the rdp accountant"
        )


# ----------------------------------------------------------------------------- composition


@dataclass(frozen=True)
class ComposedPLD:
    """The composed loss distribution on a window of the grid, with its error terms."""

    losses: np.ndarray
    pmf: np.ndarray
    infinity_mass: float
    tail_bound: float

    def delta(self, epsilon: float) -> float:
        """δ(ε), an upper bound (the tails outside the window count in full)."""
        above = self.losses > epsilon
        y, p = self.losses[above], self.pmf[above]
        value = float(np.sum(p * -np.expm1(epsilon - y)))
        return min(1.0, value + self.infinity_mass + self.tail_bound)

    def epsilon(self, delta: float) -> float:
        """The smallest ε >= 0 with δ(ε) <= ``delta`` (inf if none)."""
        target = delta - self.infinity_mass - self.tail_bound
        if target <= 0:
            return math.inf
        # Suffix sums: for ε in [y_{i-1}, y_i], δ(ε) = S_p[i] − e^ε S_q[i] (+ the extra terms).
        # S_q is kept as a log: p·e^{−y} overflows for very negative losses (tiny noise during
        # calibration) although e^{y_i}·S_q[i] <= S_p[i] always holds.
        s_p = np.cumsum(self.pmf[::-1])[::-1]
        with np.errstate(divide="ignore"):
            log_terms = np.log(self.pmf) - self.losses
        log_s_q = np.logaddexp.accumulate(log_terms[::-1])[::-1]
        at_grid = s_p - np.exp(self.losses + log_s_q)  # δ(y_i) − extra
        ok = np.nonzero(at_grid <= target)[0]
        if ok.size == 0:
            return math.inf
        i = int(ok[0])
        lower = float(self.losses[i - 1]) if i > 0 else -math.inf
        upper = float(self.losses[i])
        if upper <= 0:
            return 0.0
        if math.isinf(log_s_q[i]) or s_p[i] <= target:
            return max(0.0, lower)
        # S_p − e^ε S_q = target  =>  ε = log(S_p − target) − log S_q, within [y_{i-1}, y_i].
        eps = math.log(s_p[i] - target) - float(log_s_q[i])
        return max(0.0, min(max(eps, lower), upper))


def compose(parts: list[tuple[DiscretePLD, int]], tail_bound: float = TAIL_BOUND) -> ComposedPLD:
    """The distribution of the sum of independent losses, ``count`` copies of each part."""
    if not parts:  # nothing released: all mass at loss 0
        return ComposedPLD(np.zeros(1), np.ones(1), 0.0, 0.0)
    h = parts[0][0].interval
    if any(d.infinity_mass >= 1.0 for d, _ in parts):
        return ComposedPLD(np.zeros(1), np.zeros(1), 1.0, 0.0)
    infinity = -math.expm1(sum(n * math.log1p(-d.infinity_mass) for d, n in parts))
    if infinity >= 1.0:
        return ComposedPLD(np.zeros(1), np.zeros(1), 1.0, 0.0)
    t_lo, t_hi = _chernoff_window(parts, tail_bound)
    v_lo, v_hi = math.floor(t_lo / h), math.ceil(t_hi / h)
    _check_grid(v_hi - v_lo + 1, h)
    size = fft.next_fast_len(v_hi - v_lo + 1, real=True)
    spectrum = np.ones(size // 2 + 1, dtype=complex)
    offset = 0
    for d, n in parts:
        folded = np.bincount(np.arange(d.pmf.size) % size, weights=d.pmf, minlength=size)
        spectrum *= fft.rfft(folded) ** n
        offset += n * d.offset
    circular = fft.irfft(spectrum, n=size)
    pmf = np.clip(np.roll(circular, (offset - v_lo) % size), 0.0, None)
    grid = (v_lo + np.arange(size)) * h
    return ComposedPLD(grid, pmf, infinity, 2 * tail_bound)


def _chernoff_window(parts: list[tuple[DiscretePLD, int]], tail: float) -> tuple[float, float]:
    """[t_lo, t_hi] outside which the composed (finite) loss has at most ``tail`` mass per side.

    P(Y ≥ t) ≤ Π_k M_k(λ)^{n_k} e^{−λt} and P(Y ≤ t) ≤ Π_k M_k(−λ)^{n_k} e^{λt}, with M_k the
    moment generating function of part k's finite mass; minimised over a grid of λ (λ = 1
    included, for which M(−1) ≤ 1 gives t_lo ≥ log(tail)).
    """
    lambdas = np.concatenate([np.geomspace(1e-3, 1e5, 17), [1.0]])  # a coarse grid: a wider
    # window costs little (the FFT is cheap); the bound holds for every λ.
    log_tail = math.log(1 / tail)
    up = np.zeros(lambdas.size)
    down = np.zeros(lambdas.size)
    for d, n in parts:
        y = d.losses()
        keep = d.pmf > 0
        log_p, y = np.log(d.pmf[keep]), y[keep]
        up += n * special.logsumexp(log_p[None, :] + lambdas[:, None] * y[None, :], axis=1)
        down += n * special.logsumexp(log_p[None, :] - lambdas[:, None] * y[None, :], axis=1)
    t_hi = float(np.min((up + log_tail) / lambdas))
    t_lo = float(np.max(-(down + log_tail) / lambdas))
    return t_lo, max(t_hi, t_lo)


# ----------------------------------------------------------------------------- events → losses


@dataclass(frozen=True)
class _Factor:
    remove: Loss
    add: Loss
    symmetric: bool


def _factor(event: PrivacyEvent, relation: Neighbouring) -> _Factor:
    """The single-mechanism loss pair of a primitive (possibly Poisson-sampled) event."""
    if isinstance(event, PoissonSampledEvent):
        if relation is not Neighbouring.ADD_REMOVE:
            raise UnsupportedEventError(
                "Poisson sampling amplifies privacy under add/remove-one; account it with "
                "relation add_remove, or use SampledWithoutReplacementEvent for replace-one"
            )
        q, inner = event.sample_rate, event.event
        if isinstance(inner, GaussianEvent):
            mu = 1.0 / inner.noise_multiplier(relation)
            if q == 1:
                return _symmetric(losses.ContinuousLoss(mu, 1.0, True))
            return _Factor(
                losses.ContinuousLoss(mu, q, True), losses.ContinuousLoss(mu, q, False), False
            )
        base = _atoms(inner, relation)
        return _Factor(base.poisson_sampled(q, True), base.poisson_sampled(q, False), False)
    if isinstance(event, GaussianEvent):
        return _symmetric(losses.ContinuousLoss(1.0 / event.noise_multiplier(relation), 1.0, True))
    return _symmetric(_atoms(event, relation))


def _symmetric(loss: Loss) -> _Factor:
    return _Factor(loss, loss, True)


def _atoms(event: PrivacyEvent, relation: Neighbouring) -> losses.AtomLoss:
    if isinstance(event, NoOpEvent):
        return losses.AtomLoss(np.zeros(1), np.ones(1))
    if isinstance(event, NonPrivateEvent):
        return losses.AtomLoss(np.zeros(0), np.zeros(0), 1.0)
    if isinstance(event, RandomizedResponseEvent):
        return losses.randomized_response(event.epsilon, event.num_buckets)
    if isinstance(event, PureDpEvent):
        return losses.randomized_response(event.epsilon, 2)
    if isinstance(event, LaplaceEvent | DiscreteLaplaceEvent) and event.dimension > 1:
        # A vector release: only ε-DP with ε = Δ₁/b is known, and binary randomized response
        # at that ε dominates every ε-DP mechanism (Kairouz, Oh & Viswanath 2015).
        return losses.randomized_response(sensitivity_under(event, relation) / event.scale, 2)
    if isinstance(event, LaplaceEvent):
        return losses.laplace(sensitivity_under(event, relation) / event.scale)
    if isinstance(event, DiscreteLaplaceEvent):
        return losses.discrete_laplace(event.scale, _integer_sensitivity(event, relation))
    if isinstance(event, DiscreteGaussianEvent):
        if event.dimension > 1:
            raise UnsupportedEventError(
                "the pld accountant models the one-dimensional discrete Gaussian only; for a "
                f"{event.dimension}-dimensional release use --accountant rdp (its zCDP bound)"
            )
        return losses.discrete_gaussian(event.sigma, _integer_sensitivity(event, relation))
    if isinstance(event, SampledWithoutReplacementEvent):
        raise UnsupportedEventError(
            "the pld accountant does not handle sampling without replacement; "
            "use --accountant rdp (or Poisson sampling)"
        )
    if isinstance(event, RepeatAndSelectEvent):
        raise UnsupportedEventError(
            "the pld accountant has no bound for RepeatAndSelectEvent (the best of a random "
            'number of runs); use accountant="rdp" (--accountant rdp)'
        )
    raise UnsupportedEventError(
        f"the pld accountant cannot interpret {type(event).__name__} here; "
        "supported inside sampling: Gaussian, Laplace, RR, pure DP, discrete Laplace/Gaussian"
    )


def _integer_sensitivity(
    event: DiscreteLaplaceEvent | DiscreteGaussianEvent, relation: Neighbouring
) -> int:
    value = sensitivity_under(event, relation)
    rounded = round(value)
    if abs(value - rounded) > 1e-9 or rounded < 1:
        raise UnsupportedEventError(
            f"{type(event).__name__} needs an integer sensitivity, got {value!r}"
        )
    return int(rounded)


def _flatten(event: PrivacyEvent, count: int, out: dict[PrivacyEvent, int]) -> None:
    if isinstance(event, ComposedEvent):
        for inner in event.events:
            _flatten(inner, count, out)
    elif isinstance(event, SelfComposedEvent):
        _flatten(event.event, count * event.count, out)
    else:
        out[event] = out.get(event, 0) + count


@lru_cache(maxsize=64)
def _composed(
    event: PrivacyEvent, relation: Neighbouring, interval: float
) -> tuple[ComposedPLD, ComposedPLD | None]:
    counts: dict[PrivacyEvent, int] = {}
    _flatten(event, 1, counts)
    factors = [(_factor(e, relation), n) for e, n in counts.items()]
    remove = compose([(discretize(f.remove, interval), n) for f, n in factors])
    if all(f.symmetric for f, _ in factors):
        return remove, None
    add = compose([(discretize(f.add, interval), n) for f, n in factors])
    return remove, add


# ----------------------------------------------------------------------------- public API


def epsilon(
    event: PrivacyEvent,
    delta: float,
    *,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    interval: float = DEFAULT_INTERVAL,
) -> EpsilonResult:
    """The smallest ε for which ``event`` is (ε, ``delta``)-DP, by PLD (an upper bound)."""
    check_delta(delta)
    check_positive("interval", interval)
    remove, add = _composed(event, relation, interval)
    eps = remove.epsilon(delta)
    if add is not None:
        eps = max(eps, add.epsilon(delta))
    details: dict[str, float | int | str] = {
        "value_discretization_interval": interval,
        "tail_bound": remove.tail_bound,
        "grid_points": int(remove.pmf.size),
    }
    return EpsilonResult(eps, delta, "pld", relation, details)


def delta(
    event: PrivacyEvent,
    epsilon: float,
    *,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    interval: float = DEFAULT_INTERVAL,
) -> float:
    """The smallest δ for which ``event`` is (``epsilon``, δ)-DP, by PLD (an upper bound)."""
    if not epsilon >= 0:
        raise DeniableError(f"epsilon must be >= 0, got {epsilon!r}")
    remove, add = _composed(event, relation, interval)
    value = remove.delta(epsilon)
    return max(value, add.delta(epsilon)) if add is not None else value
