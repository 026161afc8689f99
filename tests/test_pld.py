"""The PLD accountant against independent references: the published reference values, the exact
Gaussian (Balle & Wang 2018), brute-force enumeration of small mechanisms, and dp-accounting
(Google's library, used here as a test-only oracle)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant

from deniable.accounting import gaussian_exact, pld
from deniable.errors import UnsupportedEventError
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
    PureDpEvent,
    RandomizedResponseEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
)


def dpsgd(q: float, sigma: float, steps: int) -> SelfComposedEvent:
    return SelfComposedEvent(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)


def google_epsilon(events: list[tuple[float, float, int]], delta: float) -> float:
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    for q, sigma, steps in events:
        acc.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    return float(acc.get_epsilon(delta))


def test_reference_values(accounting_reference: dict) -> None:
    for case in accounting_reference["poisson_subsampled_gaussian"]:
        event = dpsgd(case["sample_rate"], case["noise_multiplier"], case["steps"])
        eps = pld.epsilon(event, case["delta"]).epsilon
        reference = case.get("pld_reference", case.get("exact"))
        assert abs(eps - reference) / reference < 0.005, (case, eps)


@pytest.mark.parametrize(("sigma", "steps"), [(0.8, 1), (2.0, 10), (5.0, 100), (10.0, 1000)])
def test_gaussian_composition_matches_exact(sigma: float, steps: int) -> None:
    # T Gaussians compose exactly to a Gaussian with mu = sqrt(T)/sigma (Dong, Roth & Su 2019).
    delta = 1e-6
    exact = gaussian_exact.gaussian_epsilon(math.sqrt(steps) / sigma, delta)
    eps = pld.epsilon(SelfComposedEvent(GaussianEvent(sigma), steps), delta).epsilon
    assert eps >= exact * (1 - 1e-9)  # an upper bound
    assert eps <= exact * (1 + 1e-4)
    for e in (0.5, 1.0, 2.0):
        exact_delta = gaussian_exact.gaussian_delta(math.sqrt(steps) / sigma, e)
        got = pld.delta(SelfComposedEvent(GaussianEvent(sigma), steps), e)
        assert exact_delta * (1 - 1e-9) - 1e-15 <= got <= exact_delta * (1 + 1e-3) + 1e-14


@pytest.mark.parametrize(
    ("q", "sigma", "steps", "delta"),
    [
        (0.001, 0.8, 10_000, 1e-6),
        (0.01, 1.0, 1_000, 1e-5),
        (0.01, 0.6, 300, 1e-5),
        (0.05, 2.0, 2_000, 1e-7),
        (0.2, 1.5, 50, 1e-5),
        (1.0, 3.0, 30, 1e-5),
    ],
)
def test_against_dp_accounting(q: float, sigma: float, steps: int, delta: float) -> None:
    ours = pld.epsilon(dpsgd(q, sigma, steps), delta).epsilon
    theirs = google_epsilon([(q, sigma, steps)], delta)
    assert abs(ours - theirs) / theirs < 2e-3, (ours, theirs)


def test_heterogeneous_phases_against_dp_accounting() -> None:
    phases = [(0.01, 1.2, 500), (0.04, 2.0, 200), (0.002, 0.9, 3000)]
    event = ComposedEvent([dpsgd(*p) for p in phases])
    ours = pld.epsilon(event, 1e-5).epsilon
    theirs = google_epsilon(phases, 1e-5)
    assert abs(ours - theirs) / theirs < 2e-3
    # Composition is more private than the worst phase alone would suggest summed naively.
    singles = sum(pld.epsilon(dpsgd(*p), 1e-5 / 3).epsilon for p in phases)
    assert ours < singles


def _exact_delta(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    return float(np.sum(np.maximum(p - math.exp(eps) * q, 0.0)))


def test_subsampled_randomized_response_against_enumeration() -> None:
    # Binary RR with eps0, Poisson-sampled at rate q, three times: enumerate all 2^3 outputs.
    eps0, rate, steps = 1.5, 0.3, 3
    keep = math.exp(eps0) / (1 + math.exp(eps0))
    with_x = np.array([keep, 1 - keep])
    without = np.array([1 - keep, keep])
    mixed = (1 - rate) * without + rate * with_x

    def product(dist: np.ndarray) -> np.ndarray:
        return np.array([np.prod(c) for c in itertools.product(dist, repeat=steps)])

    p_remove, q_remove = product(mixed), product(without)
    event = SelfComposedEvent(PoissonSampledEvent(rate, PureDpEvent(eps0)), steps)
    for eps in (0.0, 0.3, 0.8, 1.2):
        exact = max(_exact_delta(p_remove, q_remove, eps), _exact_delta(q_remove, p_remove, eps))
        got = pld.delta(event, eps)
        assert exact - 1e-12 <= got <= exact + 2e-4, (eps, got, exact)


def test_k_ary_randomized_response_total_variation() -> None:
    # δ(0) of k-ary RR is the total variation distance p − r = (e^ε − 1)/(e^ε + k − 1).
    eps0, k = 2.0, 5
    tv = math.expm1(eps0) / (math.exp(eps0) + k - 1)
    got = pld.delta(RandomizedResponseEvent(eps0, k), 0.0)
    assert tv - 1e-12 <= got <= tv * (1 + 1e-3)
    assert pld.delta(RandomizedResponseEvent(eps0, k), eps0) < 1e-12


def test_laplace_against_closed_form() -> None:
    # Laplace with ε0 = Δ/b: δ(ε) = 1 − exp((ε − ε0)/2) for |ε| ≤ ε0.
    event = LaplaceEvent(scale=2.0, sensitivity=1.0)
    for eps in (0.0, 0.1, 0.3, 0.45):
        exact = -math.expm1((eps - 0.5) / 2)
        got = pld.delta(event, eps)
        assert exact - 1e-12 <= got <= exact + 1e-4
    # k-fold composition of pure ε0-DP is kε0-DP with δ = 0.
    assert pld.delta(SelfComposedEvent(event, 4), 2.0) < 1e-12


def test_discrete_mechanisms_against_brute_force() -> None:
    sigma, sens = 1.3, 2
    x = np.arange(-60, 61)
    w = np.exp(-(x**2) / (2 * sigma**2))
    p = w / w.sum()
    q = np.exp(-((x - sens) ** 2) / (2 * sigma**2))
    q = q / q.sum()
    for eps in (0.2, 1.0, 2.0):
        exact = _exact_delta(p, q, eps)
        got = pld.delta(DiscreteGaussianEvent(sigma, sens), eps)
        assert exact - 1e-12 <= got <= exact * (1 + 1e-3) + 1e-12
    t = 1.7
    w = np.exp(-np.abs(x) / t)
    p = w / w.sum()
    q = np.exp(-np.abs(x - 1) / t)
    q = q / q.sum()
    for eps in (0.1, 0.4):
        exact = _exact_delta(p, q, eps)
        got = pld.delta(DiscreteLaplaceEvent(t, 1), eps)
        assert exact - 1e-12 <= got <= exact * (1 + 1e-3) + 1e-12


def test_replace_one_doubles_gaussian_sensitivity() -> None:
    sigma = 4.0
    eps_replace = pld.epsilon(GaussianEvent(sigma), 1e-5, relation=Neighbouring.REPLACE_ONE)
    exact = gaussian_exact.gaussian_epsilon(2 / sigma, 1e-5)
    assert abs(eps_replace.epsilon - exact) / exact < 1e-4
    assert eps_replace.relation is Neighbouring.REPLACE_ONE


def test_trivial_events() -> None:
    assert pld.epsilon(NoOpEvent(), 1e-5).epsilon == 0.0
    assert pld.epsilon(NonPrivateEvent(), 1e-5).epsilon == math.inf
    assert pld.epsilon(ComposedEvent([GaussianEvent(1.0), NonPrivateEvent()]), 0.5).epsilon == (
        math.inf
    )


def test_unsupported_events_are_named() -> None:
    wor = SampledWithoutReplacementEvent(1000, 10, GaussianEvent(1.0))
    with pytest.raises(UnsupportedEventError, match="rdp"):
        pld.epsilon(wor, 1e-5, relation=Neighbouring.REPLACE_ONE)
    with pytest.raises(UnsupportedEventError, match="add/remove"):
        pld.epsilon(dpsgd(0.01, 1.0, 10), 1e-5, relation=Neighbouring.REPLACE_ONE)


def test_epsilon_decreases_with_noise() -> None:
    values = [pld.epsilon(dpsgd(0.01, s, 1000), 1e-5).epsilon for s in (0.7, 0.9, 1.2, 2.0)]
    assert all(a > b for a, b in itertools.pairwise(values))


def test_vector_releases_use_only_their_proven_bounds() -> None:
    # A 3-dimensional Laplace release is accounted as pure ε-DP (binary RR dominates it).
    vector = LaplaceEvent(scale=2.0, sensitivity=1.0, dimension=3)
    assert pld.delta(vector, 0.5) < 1e-12
    assert pld.delta(vector, 0.0) >= pld.delta(LaplaceEvent(scale=2.0, sensitivity=1.0), 0.0)
    with pytest.raises(UnsupportedEventError, match="rdp"):
        pld.epsilon(DiscreteGaussianEvent(2.0, 1, dimension=4), 1e-5)


def test_an_empty_composition_spends_nothing() -> None:
    assert pld.epsilon(ComposedEvent([]), 1e-5).epsilon == 0.0
    assert pld.delta(ComposedEvent([]), 0.0) == 0.0
