"""PATE accounting: the data-independent events against closed forms, the data-dependent bounds
(Papernot et al. 2017, 2018) against exact Rényi divergences of the aggregators' outputs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import special, stats

from deniable import accounting
from deniable.accounting import rdp
from deniable.accounting.pate_rdp import (
    confident_gnmax_rdp,
    gaussian_data_dependent_rdp,
    gnmax_log_q,
    gnmax_rdp,
    laplace_log_q,
    lnmax_rdp,
    pure_dp_data_dependent_rdp,
    threshold_log_answered,
)
from deniable.events import ComposedEvent, GaussianEvent, Neighbouring
from deniable.mechanisms import RandomSource
from deniable.placements.pate import ConfidentGNMax, GNMax, LNMax

ORDERS = np.array([1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 32.0, 50.0])


def _renyi(log_p: np.ndarray, log_q: np.ndarray, order: float) -> float:
    """D_α(P‖Q) of two finite distributions given as log-probabilities."""
    return float(special.logsumexp(order * log_p + (1 - order) * log_q) / (order - 1))


# --- data-independent: events against closed forms ----------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 2.0, 40.0])
def test_gnmax_query_is_alpha_over_sigma_squared(sigma: float) -> None:
    # one vote change moves two counts by 1: L2 sensitivity √2, RDP α·2/(2σ²) = α/σ²
    event = GNMax(sigma).query_event(10)
    assert event == GaussianEvent(sigma=sigma, sensitivity=math.sqrt(2.0))
    np.testing.assert_allclose(rdp.compute_rdp(event, ORDERS), ORDERS / sigma**2, rtol=1e-12)


def test_threshold_check_is_alpha_over_two_sigma_squared() -> None:
    # max_j n_j has sensitivity 1: λ/(2σ₁²) (Papernot et al. 2018)
    event = ConfidentGNMax(threshold=10, sigma_threshold=3.0, sigma=2.0).threshold_event()
    np.testing.assert_allclose(rdp.compute_rdp(event, ORDERS), ORDERS / (2 * 9.0), rtol=1e-12)


def test_gnmax_run_epsilon_equals_composition_of_gaussian_events() -> None:
    votes = np.tile([15, 3, 2], (40, 1))
    agg = GNMax(4.0).aggregate(votes, RandomSource(0))
    composed = ComposedEvent([GaussianEvent(4.0, math.sqrt(2.0))] * 40)
    for name in ("rdp", "pld"):
        ours = accounting.epsilon(agg.event, 1e-5, accountant=name).epsilon
        ref = accounting.epsilon(composed, 1e-5, accountant=name).epsilon
        assert ours == pytest.approx(ref, rel=1e-6)
    # 40 queries at α/σ² each: ε by the RDP conversion of the closed-form curve
    closed = rdp.rdp_to_epsilon(rdp.DEFAULT_ORDERS, 40 * np.array(rdp.DEFAULT_ORDERS) / 16, 1e-5)
    assert agg.epsilon(1e-5, accountant="rdp").epsilon == pytest.approx(closed[0], rel=1e-12)
    claim = agg.epsilon(1e-5)
    assert claim.to_dict()["guarantee"] == "central-dp"


def test_lnmax_query_is_two_over_b_pure_dp() -> None:
    agg = LNMax(scale=4.0).aggregate(np.tile([9, 1], (5, 1)), RandomSource(0))
    eps = accounting.epsilon(agg.event, 1e-6, accountant="basic").epsilon
    assert eps == pytest.approx(5 * 2 / 4.0, rel=1e-12)


def test_confident_run_event_charges_every_check_and_the_answer_cap() -> None:
    agg = ConfidentGNMax(threshold=8, sigma_threshold=2.0, sigma=1.5, max_answered=7)
    event = agg.run_event(30, 10)
    expected = 30 * ORDERS / (2 * 4.0) + 7 * ORDERS / 1.5**2
    np.testing.assert_allclose(rdp.compute_rdp(event, ORDERS), expected, rtol=1e-12)


# --- data-dependent bounds ----------------------------------------------------------------------


def _gnmax_two_class_log_probs(votes: np.ndarray, sigma: float) -> np.ndarray:
    z = (votes[0] - votes[1]) / (math.sqrt(2.0) * sigma)
    return np.array([stats.norm.logcdf(z), stats.norm.logsf(z)])


def test_gnmax_data_dependent_bound_dominates_exact_divergence_two_classes() -> None:
    # Exact oracle: with two classes GNMax answers class 0 with probability Φ(gap/(√2σ)).
    active = 0
    for sigma in (2.0, 5.0, 10.0, 40.0):
        for n in (20, 100, 300):
            for a in range(n // 2, n + 1, max(1, n // 20)):
                votes = np.array([a, n - a])
                bound = gaussian_data_dependent_rdp(
                    float(gnmax_log_q(votes, sigma)[0]), sigma, ORDERS
                )
                assert np.all(bound <= ORDERS / sigma**2 + 1e-15)
                active += bool(np.any(bound < 0.99 * ORDERS / sigma**2))
                log_p = _gnmax_two_class_log_probs(votes, sigma)
                for other in ([a - 1, n - a + 1], [a + 1, n - a - 1]):
                    if min(other) < 0:
                        continue
                    log_q = _gnmax_two_class_log_probs(np.array(other), sigma)
                    exact = [_renyi(log_p, log_q, o) for o in ORDERS]
                    assert np.all(np.asarray(exact) <= bound + 1e-12)
    assert active > 50  # the data-dependent bound is really in use, not only the cap


def test_gnmax_data_dependent_bound_dominates_exact_divergence_three_classes() -> None:
    # Exact oracle by Gauss–Hermite quadrature: P(i) = E_z Π_{j≠i} Φ((n_i − n_j)/σ + z).
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()

    def log_probs(votes: np.ndarray, sigma: float) -> np.ndarray:
        out = []
        for i in range(3):
            log_terms = sum(
                stats.norm.logcdf((votes[i] - votes[j]) / sigma + nodes) for j in range(3) if j != i
            )
            out.append(special.logsumexp(log_terms, b=weights))
        return np.asarray(out)

    sigma, n, active = 4.0, 60, 0
    for a in range(24, 61, 6):
        for b in range(0, n - a + 1, 6):
            votes = np.array([a, b, n - a - b])
            bound = gaussian_data_dependent_rdp(float(gnmax_log_q(votes, sigma)[0]), sigma, ORDERS)
            active += bool(np.any(bound < 0.99 * ORDERS / sigma**2))
            log_p = log_probs(votes, sigma)
            for i in range(3):
                for j in range(3):
                    if i == j or votes[i] == 0:
                        continue
                    other = votes.copy()
                    other[i] -= 1
                    other[j] += 1
                    log_q = log_probs(other, sigma)
                    exact = np.array([_renyi(log_p, log_q, o) for o in ORDERS])
                    assert np.all(exact <= bound + 1e-9)
    assert active >= 5


def test_data_dependent_below_independent_on_confident_votes_and_equal_on_uniform() -> None:
    confident = np.tile([240, 2, 2, 2, 2, 2, 0, 0, 0, 0], (100, 1))
    uniform = np.tile([25] * 10, (100, 1))
    dep = gnmax_rdp(confident, 40.0)
    assert np.all(dep.rdp <= dep.data_independent_rdp * (1 + 1e-12))
    eps_dep = dep.epsilon(1e-5)
    independent = eps_dep.details["data_independent_epsilon"]
    assert isinstance(independent, float)
    assert eps_dep.epsilon < 0.2 * independent
    assert eps_dep.details["publishable"] == "no"
    flat = gnmax_rdp(uniform, 40.0)
    np.testing.assert_allclose(flat.rdp, flat.data_independent_rdp, rtol=1e-12)
    # uniform votes: q̃ is capped at (k − 1)/k
    assert gnmax_log_q(uniform[:1], 40.0)[0] == pytest.approx(math.log(0.9))
    # the data-independent curve is the accountant's for the same events
    ind = rdp.compute_rdp(GNMax(40.0).aggregate(uniform, RandomSource(0)).event)
    np.testing.assert_allclose(flat.data_independent_rdp, ind, rtol=1e-12)


def test_unanimous_certain_outcome_costs_nothing() -> None:
    assert np.all(gaussian_data_dependent_rdp(-math.inf, 3.0, ORDERS) == 0)


def test_threshold_data_dependent_bound_dominates_exact_bernoulli_divergence() -> None:
    # The check releases one bit; its neighbours move max_j n_j by ±1.
    sigma1, threshold = 6.0, 60.0
    for top in range(0, 101, 5):
        log_ans = float(threshold_log_answered(np.array([top, 0]), threshold, sigma1)[0])
        log_q = min(log_ans, math.log(-math.expm1(log_ans)))
        bound = gaussian_data_dependent_rdp(log_q, math.sqrt(2.0) * sigma1, ORDERS)
        log_p = np.array([log_ans, math.log(-math.expm1(log_ans))])
        for other in (top - 1, top + 1):
            if not 0 <= other <= 100:
                continue
            z = (other - threshold) / sigma1
            log_o = np.array([stats.norm.logcdf(z), stats.norm.logsf(z)])
            exact = np.array([_renyi(log_p, log_o, o) for o in ORDERS])
            assert np.all(exact <= bound + 1e-12)


def test_lnmax_data_dependent_bound_dominates_exact_divergence_two_classes() -> None:
    # Lemma 4 of Papernot et al. 2017 is exact for two classes:
    # P(L1 − L2 ≥ g) = (2 + g/b)/4·e^{−g/b}
    b = 2.0

    def log_probs(votes: np.ndarray) -> np.ndarray:
        g = abs(votes[0] - votes[1]) / b
        lose = math.log(2 + g) - math.log(4) - g
        win = math.log(-math.expm1(lose))
        return np.array([win, lose]) if votes[0] >= votes[1] else np.array([lose, win])

    for a in range(10, 21):
        votes = np.array([a, 20 - a])
        if a == 10:
            continue  # a tie is not a likely outcome
        bound = pure_dp_data_dependent_rdp(float(laplace_log_q(votes, b)[0]), 2 / b, ORDERS)
        for other in ([a - 1, 21 - a], [a + 1, 19 - a]):
            if min(other) < 0:
                continue
            exact = np.array(
                [_renyi(log_probs(votes), log_probs(np.array(other)), o) for o in ORDERS]
            )
            assert np.all(exact <= bound + 1e-12)
    run = lnmax_rdp(np.tile([20, 0], (10, 1)), b)
    assert np.all(run.rdp < run.data_independent_rdp)


def test_confident_gnmax_data_dependent_counts_checks_and_answers() -> None:
    votes = np.array([[50, 0, 0], [20, 15, 15], [48, 2, 0]])
    answered = np.array([True, False, True])
    run = confident_gnmax_rdp(votes, answered, threshold=40, sigma_threshold=5.0, sigma=3.0)
    expected_ind = 3 * run.orders / (2 * 25.0) + 2 * run.orders / 9.0
    np.testing.assert_allclose(run.data_independent_rdp, expected_ind, rtol=1e-12)
    assert np.all(run.rdp <= run.data_independent_rdp + 1e-15)
    assert run.per_query.shape == (3, run.orders.size)
    assert run.epsilon(1e-5).relation is Neighbouring.ADD_REMOVE


def test_pate_accounting_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import deniable.accounting.pate_rdp\n"
        "assert 'torch' not in sys.modules, 'pate_rdp imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
