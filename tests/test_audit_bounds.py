"""Empirical ε lower bounds: exact oracles, validity on games with a known ε, power, bad inputs.

Validity tests repeat a membership game with known ε 200 times (seeds 0..199). A valid bound at
confidence c exceeds the true ε with probability at most 1 − c per run, so the number of
violations is stochastically below Binomial(200, 1 − c); each test allows up to the point that
Binomial exceeds with probability < 1e-3, its false-failure rate if the method is valid.
"""

from __future__ import annotations

import ast
import doctest
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import deniable.audit.bounds_one_run as one_run_module
import deniable.audit.bounds_threshold as threshold_module
from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.audit.bounds import (
    BonferroniThresholds,
    FixedThreshold,
    HeldOutThreshold,
    LowerBound,
    ThresholdStrategy,
    clopper_pearson_interval,
    clopper_pearson_lower_bound,
    compare,
    cp_upper,
    gdp_lower_bound,
    one_run_epsilon,
    one_run_lower_bound,
    one_run_p_value,
)
from deniable.errors import DeniableError, InvalidParameterError

REPS = 200
ThresholdBound = Callable[..., LowerBound]


def allowed_violations(confidence: float, reps: int = REPS, false_failure: float = 1e-3) -> int:
    """Largest count c with P[Binomial(reps, 1 − confidence) > c] < ``false_failure``."""
    return int(stats.binom.isf(false_failure, reps, 1 - confidence))


def gaussian_game(rng: np.random.Generator, mu: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n member scores ~ N(μ, 1) and n non-member scores ~ N(0, 1): μ-GDP."""
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    return rng.normal(mu * member, 1.0), member


def rr_game(rng: np.random.Generator, epsilon: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ε-DP randomized response of the membership bit: score 1 w.p. e^ε/(1+e^ε) if member."""
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    truthful = rng.random(2 * n) < math.exp(epsilon) / (1 + math.exp(epsilon))
    return (member == truthful).astype(float), member


# --- Clopper–Pearson intervals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (7, 200), (500, 1000), (0, 5000)]
)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.999])
def test_clopper_pearson_interval_matches_scipy(k: int, n: int, confidence: float) -> None:
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    lo, hi = clopper_pearson_interval(k, n, confidence)
    assert lo == pytest.approx(ref.low, abs=1e-12)
    assert hi == pytest.approx(ref.high, abs=1e-12)


def test_one_sided_upper_bound_closed_form_at_zero() -> None:
    # P[0 successes] = (1 − p)^n = α  ⇒  upper = 1 − α^(1/n).
    assert float(cp_upper(0, 100, 0.01)) == pytest.approx(1 - 0.01 ** (1 / 100), rel=1e-12)
    assert float(cp_upper(100, 100, 0.01)) == 1.0


# --- exact values on perfectly separated scores ---------------------------------------------------


def separated(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    return np.where(member, 1.0, 0.0) + np.linspace(0, 0.5, 2 * n), member


def test_clopper_pearson_fixed_threshold_closed_form() -> None:
    scores, member = separated()
    lb = clopper_pearson_lower_bound(
        scores, member, delta=1e-3, confidence=0.9, strategy=FixedThreshold(0.9)
    )
    u = 1 - (0.1 / 2) ** (1 / 100)  # FP = FN = 0, α/2 on each rate
    assert lb.epsilon == pytest.approx(math.log((1 - 1e-3 - u) / u), rel=1e-10)
    assert (lb.method, lb.threshold, lb.delta, lb.confidence) == ("clopper-pearson", 0.9, 1e-3, 0.9)
    assert lb.details["false_positives"] == 0 and lb.details["false_negatives"] == 0


def test_bonferroni_pays_for_its_grid_and_nothing_more() -> None:
    scores, member = separated()
    lb = clopper_pearson_lower_bound(scores, member, delta=0.0, confidence=0.95)
    k = lb.details["thresholds_tested"]
    assert isinstance(k, int) and 2 <= k <= 64
    assert lb.details["per_test_alpha"] == pytest.approx(0.05 / (2 * k))
    u = 1 - (0.05 / (2 * k)) ** (1 / 100)
    assert lb.epsilon == pytest.approx(math.log((1 - u) / u), rel=1e-10)


def test_gdp_fixed_threshold_closed_form() -> None:
    scores, member = separated()
    lb = gdp_lower_bound(scores, member, delta=1e-5, confidence=0.9, strategy=FixedThreshold(0.9))
    u = 1 - 0.05 ** (1 / 100)
    mu = 2 * stats.norm.isf(u)
    assert lb.details["mu_lower"] == pytest.approx(mu, rel=1e-10)
    assert lb.epsilon == pytest.approx(gaussian_epsilon(mu, 1e-5), rel=1e-10)
    assert "Gaussian" in str(lb.details["assumption"])


def test_reverse_direction_is_used_when_it_is_the_stronger_one() -> None:
    # Members all sit above the threshold (FNR = 0) but half the non-members do too (FPR ≈ ½):
    # ln(TPR/FPR) is weak, ln(TNR/FNR) strong.
    rng = np.random.default_rng(0)
    member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = np.where(member, 1.0, rng.choice([0.0, 2.0], 600))  # members never below 0.5
    lb = clopper_pearson_lower_bound(scores, member, delta=0.0, strategy=FixedThreshold(0.5))
    assert lb.details["direction"] == "tnr/fnr" and lb.epsilon > 0


def test_useless_scores_give_zero() -> None:
    member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = np.zeros(100)
    for bound in (clopper_pearson_lower_bound, gdp_lower_bound):
        for strategy in (BonferroniThresholds(), HeldOutThreshold(), FixedThreshold(0.0)):
            lb = bound(scores, member, delta=1e-5, strategy=strategy)
            assert lb.epsilon == 0.0 and lb.threshold is None


# --- validity on games with a known ε -------------------------------------------------------------

STRATEGIES: list[ThresholdStrategy] = [
    HeldOutThreshold(fraction=0.5, seed=1),
    BonferroniThresholds(count=32),
    FixedThreshold(0.5),
]


@pytest.mark.parametrize("bound", [clopper_pearson_lower_bound, gdp_lower_bound])
@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.describe())
@pytest.mark.parametrize(("delta", "confidence"), [(1e-5, 0.95), (0.05, 0.6)])
def test_validity_gaussian_game(
    bound: ThresholdBound, strategy: ThresholdStrategy, delta: float, confidence: float
) -> None:
    mu, n = 1.0, 300
    true_eps = gaussian_epsilon(mu, delta)
    lbs = []
    for seed in range(REPS):
        scores, member = gaussian_game(np.random.default_rng(seed), mu, n)
        lbs.append(bound(scores, member, delta=delta, confidence=confidence, strategy=strategy))
    violations = sum(lb.epsilon > true_eps for lb in lbs)
    assert violations <= allowed_violations(confidence)
    assert np.mean([lb.epsilon for lb in lbs]) > 0  # not vacuous


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.describe())
@pytest.mark.parametrize("confidence", [0.95, 0.6])
def test_validity_randomized_response_pure_dp(
    strategy: ThresholdStrategy, confidence: float
) -> None:
    # Randomized response is tight at one point: the bound aims straight at ε, so a wrong
    # direction, a missing log or a too-narrow interval shows up as violations.
    epsilon, n = 1.0, 300
    violations = 0
    for seed in range(REPS):
        scores, member = rr_game(np.random.default_rng(seed), epsilon, n)
        lb = clopper_pearson_lower_bound(
            scores, member, delta=0.0, confidence=confidence, strategy=strategy
        )
        violations += lb.epsilon > epsilon
    assert violations <= allowed_violations(confidence)


def test_power_many_samples() -> None:
    mu, delta, n = 2.0, 1e-5, 20_000
    true_eps = gaussian_epsilon(mu, delta)
    scores, member = gaussian_game(np.random.default_rng(2024), mu, n)
    gdp = gdp_lower_bound(scores, member, delta=delta)
    assert 0.75 * true_eps < gdp.epsilon <= true_eps
    held_out = gdp_lower_bound(scores, member, delta=delta, strategy=HeldOutThreshold())
    assert 0.75 * true_eps < held_out.epsilon <= true_eps
    cp = clopper_pearson_lower_bound(scores, member, delta=delta)
    assert 0 < cp.epsilon <= true_eps


# --- one-run auditing -----------------------------------------------------------------------------


def _loop_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The paper's Appendix D computation, written as a plain loop (the oracle)."""
    q = 1 / (1 + math.exp(-eps))
    beta = stats.binom.sf(v - 1, r, q)
    a, running = 0.0, 0.0
    for i in range(1, v + 1):
        running += stats.binom.pmf(v - i, r, q)
        a = max(a, running / i)
    return min(beta + a * delta * 2 * m, 1.0)


@pytest.mark.parametrize(
    ("m", "r", "v", "eps", "delta"),
    [
        (1000, 1000, 880, 2.0, 1e-5),
        (1000, 100, 95, 1.0, 1e-3),
        (1000, 20, 18, 0.5, 1e-2),
        (100, 50, 30, 0.0, 1e-4),
        (10, 10, 10, 3.0, 0.0),
        (50, 20, 0, 0.3, 0.1),
    ],
)
def test_one_run_p_value_matches_loop(m: int, r: int, v: int, eps: float, delta: float) -> None:
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(
        _loop_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15
    )


def test_one_run_pure_dp_is_the_binomial_tail() -> None:
    q = 1 / (1 + math.exp(-1.5))
    assert one_run_p_value(500, 200, 150, 1.5, 0.0) == pytest.approx(
        stats.binom.sf(149, 200, q), rel=1e-10
    )


@pytest.mark.parametrize(
    ("m", "r", "v", "delta"),
    [
        (1000, 1000, 880, 1e-5),
        (1000, 100, 95, 1e-3),
        (100, 100, 70, 1e-2),
        (10_000, 200, 190, 1e-4),
    ],
)
def test_one_run_p_value_increases_with_epsilon(m: int, r: int, v: int, delta: float) -> None:
    # The search for ε_lb relies on this (module docstring of bounds_one_run).
    ps = [one_run_p_value(m, r, v, float(e), delta) for e in np.linspace(0, 12, 600)]
    assert np.all(np.diff(ps) >= -1e-15)


def test_one_run_epsilon_is_the_crossing_point() -> None:
    eps = one_run_epsilon(1000, 400, 330, delta=1e-5, alpha=0.05)
    assert one_run_p_value(1000, 400, 330, eps, 1e-5) < 0.05
    assert one_run_p_value(1000, 400, 330, eps + 1e-6, 1e-5) >= 0.05


def canary_run(rng: np.random.Generator, epsilon: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Canaries whose guess (score sign) is right w.p. e^ε/(1+e^ε): ε-DP randomised response."""
    included = rng.random(m) < 0.5
    right = rng.random(m) < math.exp(epsilon) / (1 + math.exp(epsilon))
    sign = np.where(included == right, 1.0, -1.0)
    return sign + 0.01 * rng.standard_normal(m), included  # the jitter only orders the ties


def test_one_run_validity_and_power_randomized_response() -> None:
    epsilon, m = 2.0, 1000
    lbs = [
        one_run_lower_bound(*canary_run(np.random.default_rng(seed), epsilon, m), delta=0.0)
        for seed in range(REPS)
    ]
    eps = np.array([lb.epsilon for lb in lbs])
    assert np.sum(eps > epsilon) <= allowed_violations(0.95)
    assert eps.mean() > 0.5 * epsilon
    assert lbs[0].details["selection"] == "bonferroni over 9 guess counts"


def test_one_run_validity_gaussian_canaries() -> None:
    mu, delta, m = 2.0, 1e-5, 1000
    true_eps = gaussian_epsilon(mu, delta)
    violations = 0
    for seed in range(REPS):
        rng = np.random.default_rng(seed)
        included = rng.random(m) < 0.5
        lb = one_run_lower_bound(rng.normal(mu * included, 1.0), included, delta=delta)
        violations += lb.epsilon > true_eps
    assert violations <= allowed_violations(0.95)


def test_one_run_delta_makes_it_smaller() -> None:
    scores, included = canary_run(np.random.default_rng(5), 2.0, 1000)
    pure = one_run_lower_bound(scores, included, delta=0.0, guesses=1000)
    approx = one_run_lower_bound(scores, included, delta=1e-4, guesses=1000)
    assert 0 < approx.epsilon < pure.epsilon
    assert approx.details["correct"] == pure.details["correct"]


def test_one_run_abstention() -> None:
    # 100 loud canaries (score ±10 by inclusion) among 900 whose score ignores inclusion.
    rng = np.random.default_rng(11)
    m = 1000
    included = rng.random(m) < 0.5
    scores = rng.standard_normal(m)
    scores[:100] += np.where(included[:100], 10.0, -10.0)
    all_guess = one_run_lower_bound(scores, included, delta=1e-5, guesses=m)
    abstain = one_run_lower_bound(scores, included, delta=1e-5, guesses=(40, 40))
    grid = one_run_lower_bound(scores, included, delta=1e-5)
    assert abstain.details["correct"] == 80 and abstain.details["guesses"] == 80
    assert abstain.epsilon > 2.0 > 0.5 > all_guess.epsilon
    assert grid.epsilon > 2.0 and int(grid.details["guesses"]) <= 100
    assert abstain.details["selection"] == "fixed guesses"
    one_sided = one_run_lower_bound(scores, included, delta=1e-5, guesses=(40, 0))
    assert one_sided.details["correct"] == 40


def test_one_run_int_guesses_split_evenly() -> None:
    scores, included = canary_run(np.random.default_rng(0), 1.0, 100)
    lb = one_run_lower_bound(scores, included, delta=0.0, guesses=7)
    assert (lb.details["guesses_in"], lb.details["guesses_out"]) == (4, 3)


# --- results, comparison, bad inputs --------------------------------------------------------------


def test_lower_bound_to_dict_is_json_ready_and_compare() -> None:
    scores, member = gaussian_game(np.random.default_rng(0), 2.0, 500)
    lb = gdp_lower_bound(scores, member, delta=1e-5)
    d = json.loads(json.dumps(lb.to_dict()))
    assert d["method"] == "gdp" and d["relation"] == "add_remove" and d["delta"] == 1e-5
    upper = gaussian_epsilon(2.0, 1e-5)
    c = compare(upper, lb)
    assert c["consistent"] is True and c["ratio"] == pytest.approx(lb.epsilon / upper)
    assert c["gap"] == pytest.approx(upper - lb.epsilon)
    assert compare(0.1, LowerBound(1.0, 1e-5, 0.95, "x"))["consistent"] is False
    assert compare(0.0, LowerBound(0.0, 1e-5, 0.95, "x"))["ratio"] == 1.0
    with pytest.raises(InvalidParameterError, match="upper_epsilon"):
        compare(-1.0, lb)


BOUNDS: list[Callable[..., LowerBound]] = [
    clopper_pearson_lower_bound,
    gdp_lower_bound,
    one_run_lower_bound,
]


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize(
    ("scores", "member", "fragment"),
    [
        ([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], "both members and non-members"),
        ([1.0, np.nan, 3.0, 4.0], [1, 0, 1, 0], "finite"),
        ([1.0, 2.0, 3.0], [1, 0, 1, 0], "same length"),
    ],
)
def test_bad_scores(bound: ThresholdBound, scores: list, member: list, fragment: str) -> None:
    with pytest.raises(DeniableError, match=fragment):
        bound(scores, member, delta=1e-5)


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.2, float("nan"), "0.9"])
def test_bad_confidence(bound: ThresholdBound, confidence: object) -> None:
    scores, member = separated(10)
    with pytest.raises(InvalidParameterError, match="confidence"):
        bound(scores, member, delta=1e-5, confidence=confidence)


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("delta", [-0.1, 1.0, 2.0, float("nan"), None])
def test_bad_delta(bound: ThresholdBound, delta: object) -> None:
    scores, member = separated(10)
    with pytest.raises(InvalidParameterError, match="delta"):
        bound(scores, member, delta=delta)


def test_gdp_needs_positive_delta() -> None:
    scores, member = separated(10)
    with pytest.raises(InvalidParameterError, match="delta"):
        gdp_lower_bound(scores, member, delta=0.0)
    assert clopper_pearson_lower_bound(scores, member, delta=0.0).epsilon > 0


def test_bad_strategies() -> None:
    scores, member = separated(10)
    with pytest.raises(InvalidParameterError, match="strategy"):
        clopper_pearson_lower_bound(scores, member, delta=1e-5, strategy="held-out")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="fraction"):
        HeldOutThreshold(fraction=1.0)
    with pytest.raises(InvalidParameterError, match="seed"):
        HeldOutThreshold(seed=-1)
    with pytest.raises(InvalidParameterError, match="count"):
        BonferroniThresholds(count=1)
    with pytest.raises(InvalidParameterError, match="threshold"):
        FixedThreshold(float("nan"))
    with pytest.raises(DeniableError, match="split"):
        clopper_pearson_lower_bound(
            [1.0, 0.0, 0.5], [1, 0, 0], delta=1e-5, strategy=HeldOutThreshold()
        )


@pytest.mark.parametrize("guesses", [0, 101, (0, 0), (60, 50), (-1, 3), True, 2.5, (1, 2, 3)])
def test_bad_guesses(guesses: object) -> None:
    scores, included = canary_run(np.random.default_rng(0), 1.0, 100)
    with pytest.raises(InvalidParameterError, match="guesses"):
        one_run_lower_bound(scores, included, delta=0.0, guesses=guesses)  # type: ignore[arg-type]


def test_one_run_epsilon_bad_alpha() -> None:
    with pytest.raises(InvalidParameterError, match="alpha"):
        one_run_epsilon(100, 10, 9, delta=0.0, alpha=1.0)
    with pytest.raises(InvalidParameterError, match="correct"):
        one_run_p_value(100, 10, 11, 1.0, 0.0)


def test_doctests() -> None:
    for module in (threshold_module, one_run_module):
        assert doctest.testmod(module).failed == 0


AUDIT_MATH_IMPORTS = {"__future__", "abc", "collections", "dataclasses", "math", "numbers"} | {
    "numpy",
    "scipy",
    "deniable",
}


def test_audit_math_imports_no_torch() -> None:
    """Principle 10: audit math depends on numpy/scipy and deniable's events/accounting only."""
    audit = Path(threshold_module.__file__).parent
    for name in ("metrics.py", *sorted(p.name for p in audit.glob("bounds*.py"))):
        tree = ast.parse((audit / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert imported <= AUDIT_MATH_IMPORTS, (name, imported)
