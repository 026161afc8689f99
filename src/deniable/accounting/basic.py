"""Basic composition: each mechanism's (ε_i, δ_i) added up (Dwork et al. 2006).

Loose but simple, and the baseline the tight accountants are compared against. Each invocation
of an approximate-DP mechanism (Gaussian) gets an equal share of the target δ, and its ε_i is the
exact Gaussian ε at that share (Balle & Wang 2018). Subsampling uses the amplification theorem
for (ε, δ)-DP: ε' = log(1 + q(e^ε − 1)), δ' = qδ (Poisson sampling under add/remove-one, Li,
Qardaji & Su 2012; sampling m of n without replacement under replace-one with q = m/n, Balle,
Barthe & Gaboardi 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.accounting.result import EpsilonResult
from deniable.errors import DeniableError, UnsupportedEventError, check_delta
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
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    sensitivity_under,
)


@dataclass(frozen=True)
class _Term:
    """One mechanism, run ``count`` times: pure part ``epsilon`` or Gaussian ratio ``mu``,
    amplified by sampling rate ``q``."""

    count: int
    q: float
    epsilon: float = 0.0
    mu: float | None = None
    discrete: bool = False


def _terms(event: PrivacyEvent, relation: Neighbouring, count: int, q: float) -> list[_Term]:
    if isinstance(event, ComposedEvent):
        return [t for e in event.events for t in _terms(e, relation, count, q)]
    if isinstance(event, SelfComposedEvent):
        return _terms(event.event, relation, count * event.count, q)
    if isinstance(event, PoissonSampledEvent | SampledWithoutReplacementEvent):
        if q != 1.0:
            raise UnsupportedEventError("the basic accountant does not handle nested sampling")
        if isinstance(event, PoissonSampledEvent):
            if relation is not Neighbouring.ADD_REMOVE:
                raise UnsupportedEventError(
                    "Poisson sampling amplifies privacy under add/remove-one; "
                    "use relation add_remove"
                )
            return _terms(event.event, relation, count, event.sample_rate)
        if relation is not Neighbouring.REPLACE_ONE:
            raise UnsupportedEventError(
                "sampling without replacement amplifies privacy under replace-one; "
                "use relation replace_one"
            )
        return _terms(event.event, relation, count, event.sample_size / event.source_size)
    if isinstance(event, NoOpEvent):
        return []
    if isinstance(event, NonPrivateEvent):
        return [_Term(count, q, epsilon=math.inf)]
    if isinstance(event, GaussianEvent | DiscreteGaussianEvent):
        mu = sensitivity_under(event, relation) / event.sigma
        return [_Term(count, q, mu=mu, discrete=isinstance(event, DiscreteGaussianEvent))]
    if isinstance(event, LaplaceEvent | DiscreteLaplaceEvent):
        return [_Term(count, q, epsilon=sensitivity_under(event, relation) / event.scale)]
    if isinstance(event, RandomizedResponseEvent | PureDpEvent):
        return [_Term(count, q, epsilon=event.epsilon)]
    raise UnsupportedEventError(f"the basic accountant cannot interpret {type(event).__name__}")


def _gaussian_epsilon(term: _Term, delta: float) -> float:
    """Exact ε of the Gaussian; for the discrete Gaussian the zCDP bound: it is
    ρ-zCDP with ρ = μ²/2 (Canonne, Kamath & Steinke 2020, Thm. 4), hence
    (ρ + 2·sqrt(ρ log(1/δ)), δ)-DP (Bun & Steinke 2016, Prop. 1.3)."""
    assert term.mu is not None
    if not term.discrete:
        return gaussian_epsilon(term.mu, delta)
    rho = term.mu**2 / 2
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def _amplify(epsilon: float, q: float) -> float:
    return math.log1p(q * math.expm1(epsilon)) if q < 1 else epsilon


def epsilon(
    event: PrivacyEvent, delta: float, *, relation: Neighbouring = Neighbouring.ADD_REMOVE
) -> EpsilonResult:
    """Σ ε_i with δ split equally over the Gaussian invocations."""
    check_delta(delta)
    terms = _terms(event, relation, 1, 1.0)
    gaussian_runs = sum(t.count for t in terms if t.mu is not None)
    total = 0.0
    for term in terms:
        if term.mu is None:
            total += term.count * _amplify(term.epsilon, term.q)
            continue
        share = delta / gaussian_runs / term.q  # δ before amplification
        if share >= 1:
            continue  # δ_i >= 1 is achieved with ε_i = 0
        total += term.count * _amplify(_gaussian_epsilon(term, share), term.q)
    return EpsilonResult(total, delta, "basic", relation, {"gaussian_runs": gaussian_runs})


def delta(
    event: PrivacyEvent, epsilon: float, *, relation: Neighbouring = Neighbouring.ADD_REMOVE
) -> float:
    """The smallest δ at which :func:`epsilon` reaches ``epsilon`` (bisection in log δ)."""
    lo, hi = -300.0, math.log(0.999999)
    if _eps_at(event, math.exp(hi), relation) > epsilon:
        raise DeniableError(f"no delta < 1 gives epsilon <= {epsilon} with the basic accountant")
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _eps_at(event, math.exp(mid), relation) <= epsilon else (mid, hi)
    return math.exp(hi)


def _eps_at(event: PrivacyEvent, delta: float, relation: Neighbouring) -> float:
    return epsilon(event, delta, relation=relation).epsilon
