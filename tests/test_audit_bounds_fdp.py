"""One-run f-DP audit (Mahloujifar, Melis & Chaudhuri 2025): oracles, validity, power, bad inputs.

Oracles: a literal transcription of the reference code (``rh_with_cap``/``audit_rh_with_cap`` of
facebookresearch/PrivacyGuard), closed forms for the ε-DP and 0-GDP curves when every guess is
right, and the exact binomial tail of randomised response, which the bound for its curve must not
undercut.

Validity on the idealised Gaussian mechanism: canary i is included w.p. ½ and scores
N(μ·included_i, 1), exactly μ-GDP for each canary, μ = 2 (true ε = 9.997 at δ = 1e-5), m = 1000,
repeated for seeds 0..199. A valid bound at confidence 0.95 exceeds the true ε with probability at
most 5 % per run, so the number of violations is stochastically below Binomial(200, 0.05); the
test allows up to the count that Binomial exceeds with probability < 1e-3, its false-failure rate
if the method is valid. Observed: 0 violations (the bound is far below the true ε: mean 4.66,
max 5.66 over the 200 seeds), so the simulated error rate is 0/200.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import special, stats

import deniable.audit.bounds_one_run_fdp as fdp_module
from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.audit import one_run_fdp_lower_bound as exported
from deniable.audit.bounds import (
    epsilon_dp_inverse_blow_up,
    fdp_tail_bound,
    gaussian_inverse_blow_up,
    one_run_fdp_lower_bound,
    one_run_fdp_mu,
    one_run_fdp_p_value,
    one_run_lower_bound,
)
from deniable.errors import DeniableError

REPS = 200
DELTA = 1e-5


def allowed_violations(confidence: float, reps: int = REPS, false_failure: float = 1e-3) -> int:
    """Largest count c with P[Binomial(reps, 1 − confidence) > c] < ``false_failure``."""
    return int(stats.binom.isf(false_failure, reps, 1 - confidence))


def gaussian_canaries(seed: int, mu: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    return rng.normal(mu * included, 1.0), included


# --- the reference code, transcribed literally (the oracle) --------------------------------------


def reference_rejects(m: int, c: int, c_cap: int, mu: float, tau: float) -> bool:
    """PrivacyGuard's ``audit_rh_with_cap`` (k = 2) with the Gaussian ``blow_up_inverse``, as
    published; True when the audit fails, i.e. μ-GDP is rejected at level τ."""

    def inverse_blow_up(x: float) -> float:
        return float(stats.norm.cdf(stats.norm.ppf(x) - mu))

    threshold = tau * c_cap / m
    alpha = threshold * c / c_cap
    beta = threshold * (c_cap - c) / c_cap
    h = [0.0] * (c + 1)
    r = [0.0] * (c + 1)
    h[c] = beta
    r[c] = alpha
    for i in range(c - 1, -1, -1):
        h[i] = max(h[i + 1], inverse_blow_up(r[i + 1]))
        r[i] = r[i + 1] + (i / (c_cap - i)) * (h[i] - h[i + 1])
    return not r[0] + h[0] <= c_cap / m


CASES = [  # (m, guesses, correct)
    (1000, 200, 200),
    (1000, 200, 190),
    (1000, 100, 95),
    (1000, 50, 50),
    (1000, 1000, 850),
    (500, 300, 250),
    (100, 100, 80),
    (100, 20, 20),
]


@pytest.mark.parametrize(("m", "k", "v"), CASES)
def test_decisions_match_the_reference_code(m: int, k: int, v: int) -> None:
    disagreements = []
    for mu in (0.0, 0.3, 0.8, 1.2, 1.6, 2.5, 4.0):
        for tau in (0.05, 0.005, 1e-4):
            ours = fdp_module._rejects(m, k, v, gaussian_inverse_blow_up(mu), tau)
            if ours != reference_rejects(m, v, k, mu, tau):
                disagreements.append((mu, tau))
    assert not disagreements


@pytest.mark.parametrize(("m", "k", "v"), [(1000, 200, 200), (1000, 100, 95), (100, 100, 80)])
def test_mu_lower_bound_is_the_reference_crossing(m: int, k: int, v: int) -> None:
    mu = one_run_fdp_mu(m, k, v, alpha=0.05)
    assert mu > 0
    assert reference_rejects(m, v, k, mu * (1 - 1e-5), 0.05)
    assert not reference_rejects(m, v, k, mu * (1 + 1e-5), 0.05)


# --- closed forms and the exact tail of randomised response --------------------------------------


@pytest.mark.parametrize(
    ("m", "k", "epsilon"), [(50, 20, 1.0), (1000, 10, 2.0), (100, 7, 0.3), (10, 10, 1.0)]
)
def test_all_right_with_the_pure_dp_curve_is_randomised_response(
    m: int, k: int, epsilon: float
) -> None:
    """With the ε-DP curve and v = k the bound is (e^ε/(1 + e^ε))^k: the exact probability that
    ε-randomised response gets all k guesses right, so the bound is tight there."""
    bound = fdp_tail_bound(m, k, k, epsilon_dp_inverse_blow_up(epsilon))
    assert bound == pytest.approx(special.expit(epsilon) ** k, rel=1e-6)
    assert bound >= special.expit(epsilon) ** k


@pytest.mark.parametrize(("m", "k"), [(20, 20), (1000, 100)])
def test_no_leakage_all_right_is_a_coin_flip_per_guess(m: int, k: int) -> None:
    assert one_run_fdp_p_value(m, k, k, 0.0) == pytest.approx(0.5**k, rel=1e-6)


@pytest.mark.parametrize(("m", "k", "epsilon"), [(1000, 1000, 1.0), (100, 100, 0.5), (50, 20, 1.0)])
def test_pure_dp_curve_never_undercuts_randomised_response(m: int, k: int, epsilon: float) -> None:
    """ε-randomised response of each inclusion bit has the ε-DP curve and gets each guess right
    independently w.p. q = e^ε/(1 + e^ε): P[W ≥ v] is the binomial tail, and a valid bound for
    that curve is never below it, down to the smallest tails (1e-137 here)."""
    inverse = epsilon_dp_inverse_blow_up(epsilon)
    q = special.expit(epsilon)
    for v in range(0, k + 1, max(1, k // 50)):
        exact = float(stats.binom.sf(v - 1, k, q))
        assert fdp_tail_bound(m, k, v, inverse) >= exact * (1 - 1e-6), v


def test_gaussian_tail_bound_holds_for_gaussian_canaries() -> None:
    """Monte Carlo P[W ≥ v] of the idealised Gaussian game (2000 runs, m = 100, top 10 "in" and
    bottom 10 "out", μ = 1) stays below the μ-GDP tail bound (plus 4 standard errors)."""
    m, k, mu, runs = 100, 20, 1.0, 2000
    rng = np.random.default_rng(0)
    included = rng.random((runs, m)) < 0.5
    scores = rng.normal(mu * included, 1.0)
    ordered = np.take_along_axis(included, np.argsort(-scores, axis=1), axis=1)
    right = ordered[:, :10].sum(1) + (~ordered[:, -10:]).sum(1)
    for v in (16, 18, 19, 20):
        freq = float(np.mean(right >= v))
        se = math.sqrt(max(freq * (1 - freq), 1e-4) / runs)
        assert freq <= one_run_fdp_p_value(m, k, v, mu) + 4 * se, v


# --- monotonicity the search relies on, and the crossing point ------------------------------------


@pytest.mark.parametrize(("m", "k", "v"), [(1000, 200, 200), (1000, 1000, 880), (100, 100, 70)])
def test_p_value_increases_with_mu(m: int, k: int, v: int) -> None:
    # The bisection for μ_lb relies on this (module docstring).
    ps = [one_run_fdp_p_value(m, k, v, float(mu)) for mu in np.linspace(0, 6, 120)]
    assert np.all(np.diff(ps) >= -1e-12 * np.array(ps[1:]))


def test_mu_is_the_crossing_point_and_epsilon_follows() -> None:
    mu = one_run_fdp_mu(1000, 200, 195, alpha=0.05)
    assert one_run_fdp_p_value(1000, 200, 195, mu) < 0.05
    assert one_run_fdp_p_value(1000, 200, 195, mu + 1e-6) >= 0.05
    assert one_run_fdp_mu(1000, 200, 100, alpha=0.05) == 0.0  # chance accuracy: nothing rejected


# --- the lower bound from scores ----------------------------------------------------------------


def test_validity_and_power_on_the_idealised_gaussian_mechanism() -> None:
    """Module docstring: 200 seeds, μ = 2, m = 1000; at most the allowed violations of the true ε,
    and tighter than Steinke et al. on the same scores (mean over the first 40 seeds)."""
    mu, m = 2.0, 1000
    true_eps = gaussian_epsilon(mu, DELTA)
    fdp, steinke = [], []
    for seed in range(REPS):
        scores, included = gaussian_canaries(seed, mu, m)
        fdp.append(one_run_fdp_lower_bound(scores, included, delta=DELTA).epsilon)
        if seed < 40:
            steinke.append(one_run_lower_bound(scores, included, delta=DELTA).epsilon)
    eps = np.array(fdp)
    assert np.sum(eps > true_eps) <= allowed_violations(0.95)
    assert np.mean(eps[:40]) > 1.3 * np.mean(steinke)
    assert np.mean(eps) > 4.0


def test_result_fields_and_fixed_guesses() -> None:
    scores, included = gaussian_canaries(3, 2.0, 1000)
    lb = one_run_fdp_lower_bound(scores, included, delta=DELTA)
    assert lb.method == "one-run-fdp" and lb.threshold is None and lb.confidence == 0.95
    d = lb.details
    assert d["selection"] == "bonferroni over 9 guess counts"
    assert d["per_test_alpha"] == pytest.approx(0.05 / 9)
    assert float(d["p_value"]) < float(d["per_test_alpha"])
    assert lb.epsilon == pytest.approx(gaussian_epsilon(float(d["mu_lower"]), DELTA))
    fixed = one_run_fdp_lower_bound(scores, included, delta=DELTA, guesses=(100, 0))
    assert (fixed.details["guesses_in"], fixed.details["guesses_out"]) == (100, 0)
    assert fixed.details["selection"] == "fixed guesses"
    assert fixed.details["correct"] == int(np.sum(included[np.argsort(-scores)[:100]]))
    steinke = one_run_lower_bound(scores, included, delta=DELTA, guesses=(100, 0))
    assert fixed.epsilon > steinke.epsilon > 0
    assert exported is one_run_fdp_lower_bound


def test_abstention_finds_the_loud_canaries() -> None:
    # 100 loud canaries (score ±10 by inclusion) among 900 whose score ignores inclusion.
    rng = np.random.default_rng(11)
    m = 1000
    included = rng.random(m) < 0.5
    scores = rng.standard_normal(m)
    scores[:100] += np.where(included[:100], 10.0, -10.0)
    all_guess = one_run_fdp_lower_bound(scores, included, delta=DELTA, guesses=m)
    abstain = one_run_fdp_lower_bound(scores, included, delta=DELTA, guesses=(40, 40))
    assert abstain.details["correct"] == 80
    assert abstain.epsilon > 2.0 > all_guess.epsilon


def test_no_signal_gives_zero() -> None:
    rng = np.random.default_rng(1)
    included = rng.random(500) < 0.5
    lb = one_run_fdp_lower_bound(rng.standard_normal(500), included, delta=DELTA)
    assert lb.epsilon == 0.0 and lb.details["mu_lower"] == 0.0


def test_doctests() -> None:
    assert doctest.testmod(fdp_module).failed == 0


# --- bad inputs ----------------------------------------------------------------------------------


GOOD_SCORES = [0.1, 0.9, 0.4, 0.7]
GOOD_INCLUDED = [False, True, False, True]


@pytest.mark.parametrize(
    ("scores", "included", "kwargs", "name"),
    [
        ([0.1, math.nan, 0.4, 0.7], GOOD_INCLUDED, {}, "finite"),
        (GOOD_SCORES, [False, True, True], {}, "same length"),
        (GOOD_SCORES, [0, 2, 0, 1], {}, "included"),
        (GOOD_SCORES, [True] * 4, {}, "included"),
        (GOOD_SCORES, GOOD_INCLUDED, {"confidence": 0.0}, "confidence"),
        (GOOD_SCORES, GOOD_INCLUDED, {"confidence": 1.0}, "confidence"),
        (GOOD_SCORES, GOOD_INCLUDED, {"confidence": 1.5}, "confidence"),
        (GOOD_SCORES, GOOD_INCLUDED, {"confidence": math.nan}, "confidence"),
        (GOOD_SCORES, GOOD_INCLUDED, {"delta": 0.0}, "delta"),
        (GOOD_SCORES, GOOD_INCLUDED, {"delta": 1.0}, "delta"),
        (GOOD_SCORES, GOOD_INCLUDED, {"delta": math.nan}, "delta"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guesses": 0}, "guesses"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guesses": 5}, "guesses"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guesses": (3, 2)}, "guesses"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guesses": 2.5}, "guesses"),
    ],
)
def test_bad_inputs_raise_one_line(
    scores: list[float], included: list[object], kwargs: dict[str, object], name: str
) -> None:
    args: dict[str, object] = {"delta": DELTA, **kwargs}
    with pytest.raises(DeniableError) as info:
        one_run_fdp_lower_bound(scores, included, **args)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and name in message


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: one_run_fdp_p_value(10, 11, 5, 1.0), "guesses"),
        (lambda: one_run_fdp_p_value(10, 5, 6, 1.0), "correct"),
        (lambda: one_run_fdp_p_value(0, 1, 0, 1.0), "m"),
        (lambda: one_run_fdp_p_value(10, 5, 3, -1.0), "mu"),
        (lambda: one_run_fdp_p_value(10, 5, 3, math.inf), "mu"),
        (lambda: one_run_fdp_mu(10, 5, 3, alpha=0.0), "alpha"),
        (lambda: one_run_fdp_mu(10, 5, 3, alpha=1.0), "alpha"),
        (lambda: epsilon_dp_inverse_blow_up(-0.5), "epsilon"),
        (lambda: fdp_tail_bound(10, 5, 3, "gaussian"), "inverse_blow_up"),  # type: ignore[arg-type]
    ],
)
def test_bad_counts_and_parameters_raise_one_line(call: object, name: str) -> None:
    assert callable(call)
    with pytest.raises(DeniableError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and name in message
