"""Smooth-sensitivity release of PATE's data-dependent cost (Papernot et al. 2018, App. B).

References: the expected arrays below are the ones in the authors' unit tests
(tensorflow/privacy ``research/pate_2018/smooth_sensitivity_test.py``), produced by their
``smooth_sensitivity.py``; everything else is checked against brute force over all vote
histograms and against the exact Rényi divergence of two Gaussians.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special, stats

from deniable.accounting.pate_rdp import (
    confident_gnmax_rdp,
    gaussian_data_dependent_rdp,
    gnmax_log_q,
    gnmax_rdp,
)
from deniable.accounting.rdp import rdp_to_epsilon
from deniable.errors import DeniableError
from deniable.mechanisms import RandomSource
from deniable.placements.pate import (
    ConfidentGNMax,
    GNMax,
    LNMax,
    analyse_confident_gnmax,
    analyse_gnmax,
    publish_confident_gnmax_rdp,
    publish_data_dependent_rdp,
    publish_gnmax_rdp,
)
from deniable.placements.pate import smooth_sensitivity as ss

ALPHA = 1e-3  # each KS test below wrongly fails with probability 0.1 %
# the reference arrays carry 9-12 significant digits, and the reference computes the same
# threshold step at two max votes 2e-8 apart (9.01543247e-02 and 9.01543266e-02)
RTOL = 1e-7


# --- the authors' unit tests ---------------------------------------------------------------------


def test_gnmax_local_sensitivities_match_the_reference_going_right() -> None:
    out = ss.gnmax_local_sensitivities(np.array([10, 0, 0]), 0.5, 1.5)
    expected = [3.13503646e-17, 1.60178280e-08, 5.90681786e-03] + [5.99981308e00] * 7
    assert out.shape == (11,)  # distances 0..10; the reference stops at 9
    np.testing.assert_allclose(out[:10], expected, rtol=RTOL, atol=0)
    assert out[10] == out[9]  # the plateau


def test_gnmax_local_sensitivities_match_the_reference_going_left() -> None:
    out = ss.gnmax_local_sensitivities(np.array([1000, 500, 300, 200, 0]), 250.0, 10.0)
    expected = [0.0] * 298 + [2.77693450548e-7, 2.10853979548e-6] + [2.73113623988e-6] * 1700
    np.testing.assert_allclose(out[:2000], expected, rtol=RTOL, atol=0)
    assert out[2000] == pytest.approx(2.73113623988e-6, rel=RTOL)


THRESHOLD_CASES = {
    16: [0] * 3
    + [1.48454129e-04, 1.47826870e-02, 3.94153241e-02, 6.45775697e-02, 9.01543247e-02]
    + [1.16054002e-01, 1.42180452e-01, 1.42180452e-01, 1.48454129e-04, 1.47826870e-02]
    + [3.94153241e-02, 6.45775697e-02, 9.01543266e-02, 1.16054000e-01, 1.42180452e-01]
    + [1.68302106e-01, 1.93127860e-01]
    + [0] * 10,
    2: [1.60212079e-01, 2.07021132e-01, 2.07021132e-01, 1.93127860e-01, 1.68302106e-01]
    + [1.42180452e-01, 1.16054002e-01, 9.01543247e-02, 6.45775697e-02, 3.94153241e-02]
    + [1.47826870e-02, 1.48454129e-04]
    + [0] * 18,
    50: [1.35750725752e-19, 1.88990500499e-17, 2.05403154065e-15, 1.74298153642e-13]
    + [1.15489723995e-11, 5.97584949325e-10, 2.41486826748e-08, 7.62150641922e-07]
    + [1.87846248741e-05, 0.000360973025976, 0.000360973025976, 2.76377015215e-50]
    + [1.00904975276e-53, 2.87254164748e-57, 6.37583360761e-61, 1.10331620211e-64]
    + [1.48844393335e-68, 1.56535552444e-72, 1.28328011060e-76, 8.20047697109e-81]
    + [0] * 10,
}


@pytest.mark.parametrize("threshold", sorted(THRESHOLD_CASES))
def test_threshold_local_sensitivities_match_the_reference(threshold: int) -> None:
    votes = np.array([20, 10, 0])  # 30 teachers, σ₁ = 2, λ = 10
    out = ss.threshold_local_sensitivities(votes, threshold, 2.0, 10.0)
    # the reference fills distances 0..max(20, 30 - 20) - 1 = 0..19 (it skips a max vote of 0)
    np.testing.assert_allclose(out[:20], THRESHOLD_CASES[threshold][:20], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(out[21:], 0.0)
    costs = ss.threshold_rdp_by_max_vote(30, threshold, 2.0, 10.0)
    assert out[20] == abs(costs[1] - costs[0])  # max vote 0, 20 steps away: ours includes it


def test_conditions_c5_c6_match_the_reference() -> None:
    assert ss.gnmax_conditions(20.0, 10, 25.0) == (True, False)
    assert ss.gnmax_conditions(30.0, 10, 25.0) == (True, True)


def test_smooth_sensitivity_is_the_discounted_max() -> None:
    rng = np.random.default_rng(0)
    a = rng.exponential(size=50)
    for beta in (0.0, 0.01, 0.3):
        reference = max(a[d] * math.exp(-beta * d) for d in range(a.size))
        assert ss.smooth_sensitivity(a, beta) == pytest.approx(reference, rel=1e-14)


# --- pieces against independent formulas ---------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 10])
@pytest.mark.parametrize("sigma", [0.5, 4.0, 40.0])
def test_neighbour_q_bounds_match_the_erfc_form(m: int, sigma: float) -> None:
    # the reference: bl/bu(q) = (m − 1)/2·erfc(erfcinv(2q/(m − 1)) ± 1/σ), bu capped at 1
    for q in np.geomspace(1e-12, (m - 1) / m, 25):
        core = special.erfcinv(2 * q / (m - 1))
        bl = (m - 1) / 2 * special.erfc(core + 1 / sigma)
        bu = min(1.0, (m - 1) / 2 * special.erfc(core - 1 / sigma))
        lq = math.log(q)
        assert ss._log_bound_q(lq, sigma, m, upper=False) == pytest.approx(math.log(bl), rel=1e-9)
        assert ss._log_bound_q(lq, sigma, m, upper=True) == pytest.approx(math.log(bu), rel=1e-9)


@pytest.mark.parametrize(("sigma", "order"), [(0.5, 1.5), (2.0, 3.0), (40.0, 20.0), (100.0, 50.0)])
def test_analysed_cost_is_the_data_dependent_bound_or_above(sigma: float, order: float) -> None:
    # β(q) switches to λ/σ² at q₀; below q₀ it is pate_rdp's bound, above it never smaller
    log_q0 = ss.gnmax_log_q0(sigma, order)
    for log_q in -np.geomspace(1e-3, 1e4, 200):
        ours = ss.gnmax_rdp_of_q(float(log_q), sigma, order)
        bound = gaussian_data_dependent_rdp(float(log_q), sigma, np.array([order]))[0]
        assert ours >= bound * (1 - 1e-12)
        if log_q < log_q0:
            assert ours == pytest.approx(bound, rel=1e-12, abs=1e-300)
        assert ours <= order / sigma**2 * (1 + 1e-12)
    # q₀ is either Thm. 6's crossing with λ/σ² or the natural bound where it already is below
    dep = ss._dep_bound(log_q0, sigma, order)
    assert dep <= order / sigma**2 * (1 + 1e-9)


def test_fast_log_q_equals_pate_rdp() -> None:
    rng = np.random.default_rng(1)
    for sigma in (0.5, 3.0, 40.0):
        for _ in range(50):
            k = int(rng.integers(2, 12))
            row = rng.multinomial(int(rng.integers(1, 300)), rng.dirichlet(np.full(k, 0.3)))
            expected = gnmax_log_q(row[None, :], sigma)[0]
            assert ss._log_q(row, sigma) == pytest.approx(expected, rel=1e-12)


def _gaussian_renyi(mu: float, ratio: float, sigma: float, order: float) -> float:
    """D_λ(N(0, σ²) ‖ N(mu, (ratio·σ)²)) in closed form (Gil, Alajaji & Linder 2013)."""
    mixed = order * ratio**2 + 1 - order
    if mixed <= 0:
        return math.inf
    return (
        math.log(ratio)
        + math.log(ratio**2 / mixed) / (2 * (order - 1))
        + order * mu**2 / (2 * sigma**2 * mixed)
    )


def test_gaussian_renyi_closed_form_against_quadrature() -> None:
    x = np.linspace(-60, 60, 600_001)
    for mu, ratio, sigma, order in [
        (0.7, 1.2, 1.0, 3.0),
        (1.0, 0.97, 2.0, 10.0),
        (0.3, 1.0, 0.5, 2),
    ]:
        log_f = order * stats.norm.logpdf(x, 0, sigma) + (1 - order) * stats.norm.logpdf(
            x, mu, ratio * sigma
        )
        numeric = (special.logsumexp(log_f) + math.log(x[1] - x[0])) / (order - 1)
        assert _gaussian_renyi(mu, ratio, sigma, order) == pytest.approx(numeric, rel=1e-8)


def _theorem_23(beta: float, sigma: float, order: float) -> float:
    """Papernot et al. 2018, Thm. 23, as in their compute_rdp_of_smooth_sensitivity_gaussian."""
    return order * math.exp(2 * beta) / sigma**2 + (
        -0.5 * math.log(1 - 2 * order * beta) + beta * order
    ) / (order - 1)


def _worst_pair(beta: float, sigma: float, order: float) -> float:
    # SS(D') = r·SS(D), r ∈ [e^{−β}, e^β]; the means differ by at most min(1, r)·SS(D)
    ratios = np.exp(np.linspace(-beta, beta, 4001))
    return max(_gaussian_renyi(min(1.0, r), r, sigma, order) for r in ratios)


@pytest.mark.parametrize("order", [1.5, 2.0, 5.0, 10.0, 25.0, 100.0])
def test_gnss_cost_bounds_every_admissible_pair(order: float) -> None:
    for fraction in (0.02, 0.1, 0.25, 0.4, 0.49):
        beta = fraction / order
        for sigma in (0.3, 1.0, 5.0, 50.0):
            exact = _worst_pair(beta, sigma, order)
            ours = ss.gnss_rdp(beta, sigma, order)
            assert exact <= ours * (1 + 1e-12)
            assert ours <= exact * (1 + 1e-6)  # attained in these cases


def test_theorem_23_is_below_the_exact_divergence_for_large_beta() -> None:
    # why it is not used: λ = 5, β = 0.4/λ, σ_s = 1
    order, beta, sigma = 5.0, 0.08, 1.0
    assert _theorem_23(beta, sigma, order) == pytest.approx(6.1687, abs=1e-4)
    assert _worst_pair(beta, sigma, order) == pytest.approx(8.2391, abs=1e-4)
    # and above it for small β, where ours is smaller still
    beta = 0.05 / order
    assert _worst_pair(beta, sigma, order) <= ss.gnss_rdp(beta, sigma, order) * (1 + 1e-12)
    assert ss.gnss_rdp(beta, sigma, order) < _theorem_23(beta, sigma, order)


def test_gnss_cost_grows_with_beta_and_shrinks_with_sigma() -> None:
    order = 10.0
    betas = np.linspace(0.0, 0.049, 30)
    costs = [ss.gnss_rdp(float(b), 2.0, order) for b in betas]
    assert np.all(np.diff(costs) > 0)
    assert costs[0] == pytest.approx(order / (2 * 4.0))  # β = 0: the Gaussian mechanism
    assert ss.gnss_rdp(0.01, 4.0, order) < ss.gnss_rdp(0.01, 2.0, order)


# --- brute force over vote histograms ------------------------------------------------------------


def _histograms(teachers: int, classes: int) -> list[tuple[int, ...]]:
    out = []
    for combo in itertools.combinations_with_replacement(range(classes), teachers):
        out.append(tuple(int(c) for c in np.bincount(combo, minlength=classes)))
    return out


def _moves(h: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Histograms one teacher's vote change away."""
    out = []
    for i, j in itertools.permutations(range(len(h)), 2):
        if h[i] > 0:
            g = list(h)
            g[i] -= 1
            g[j] += 1
            out.append(tuple(g))
    return out


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) // 2


def _gnmax_cost(h: tuple[int, ...], sigma: float, order: float) -> float:
    return ss.gnmax_rdp_of_q(ss._log_q(np.array(h), sigma), sigma, order)


# (teachers, classes, σ, λ) where C5 and C6 hold
HOLDING = [
    (8, 2, 0.3, 1.5),
    (8, 3, 0.5, 1.5),
    (10, 3, 0.8, 2.0),
    (8, 4, 1.5, 2.0),
    (9, 3, 2.0, 2.0),
]


@pytest.mark.parametrize(("teachers", "classes", "sigma", "order"), HOLDING)
def test_gnmax_bounds_dominate_brute_force_local_sensitivity(
    teachers: int, classes: int, sigma: float, order: float
) -> None:
    assert ss.gnmax_conditions(sigma, classes, order) == (True, True)
    hists = _histograms(teachers, classes)
    cost = {h: _gnmax_cost(h, sigma, order) for h in hists}
    local = {h: max(abs(cost[h] - cost[g]) for g in _moves(h)) for h in hists}
    assert max(local.values()) > 0.1  # not a vacuous case
    for base in hists:
        bound = ss.gnmax_local_sensitivities(np.array(base), sigma, order)
        truth = np.zeros(teachers + 1)
        for h in hists:
            d = _distance(base, h)
            truth[d] = max(truth[d], local[h])
        assert np.all(np.maximum.accumulate(bound) >= np.maximum.accumulate(truth) * (1 - 1e-9))
        assert bound[0] >= local[base] * (1 - 1e-9)


def test_gnmax_bounds_fail_where_condition_c6_fails() -> None:
    # the reason for the check: here the reference algorithm's A(d) misses brute-force values
    teachers, classes, sigma, order = 8, 3, 0.5, 3.0
    assert ss.gnmax_conditions(sigma, classes, order) == (True, False)
    base = (6, 2, 0)
    hists = _histograms(teachers, classes)
    cost = {h: _gnmax_cost(h, sigma, order) for h in hists}
    truth = np.zeros(teachers + 1)
    for h in hists:
        d = _distance(base, h)
        truth[d] = max(truth[d], max(abs(cost[h] - cost[g]) for g in _moves(h)))
    bound = np.maximum.accumulate(ss.gnmax_local_sensitivities(np.array(base), sigma, order))
    assert np.any(bound < np.maximum.accumulate(truth) * (1 - 1e-6))
    with pytest.raises(DeniableError, match="condition C6"):
        analyse_gnmax(np.array([base]), sigma=sigma, order=order, beta=0.1)


def test_threshold_bounds_dominate_brute_force_local_sensitivity() -> None:
    teachers, threshold, sigma1, order = 12, 8.0, 1.5, 4.0
    costs = ss.threshold_rdp_by_max_vote(teachers, threshold, sigma1, order)
    hists = _histograms(teachers, 3)
    local = {h: max(abs(costs[max(h)] - costs[max(g)]) for g in _moves(h)) for h in hists}
    for base in [(12, 0, 0), (7, 5, 0), (4, 4, 4), (6, 3, 3)]:
        bound = ss.threshold_local_sensitivities(np.array(base), threshold, sigma1, order)
        truth = np.zeros(teachers + 1)
        for h in hists:
            d = _distance(base, h)
            truth[d] = max(truth[d], local[h])
        cum_bound, cum_truth = np.maximum.accumulate(bound), np.maximum.accumulate(truth)
        assert np.all(cum_bound >= cum_truth * (1 - 1e-12))
        assert bound[0] >= local[base] * (1 - 1e-12)
        if base == (7, 5, 0):  # the max vote can move both ways: the bound is exact
            assert bound[0] == pytest.approx(local[base], rel=1e-12)


def _configurations(run: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
    """Every run one teacher change away: each query's histogram stays or moves one vote."""
    options = [[h, *_moves(h)] for h in run]
    return [list(c) for c in itertools.product(*options)]


@pytest.mark.parametrize("kind", ["gnmax", "confident"])
def test_run_smooth_sensitivity_is_beta_smooth_and_bounds_local_sensitivity(kind: str) -> None:
    teachers, sigma, order, beta = 8, 0.8, 2.0, 0.15
    threshold, sigma1 = 6.0, 1.0
    answered = np.array([True, False])

    def analyse(run: list[tuple[int, ...]]) -> ss.SmoothSensitivityAnalysis:
        v = np.array(run)
        if kind == "gnmax":
            return analyse_gnmax(v, sigma=sigma, order=order, beta=beta)
        return analyse_confident_gnmax(
            v,
            answered,
            threshold=threshold,
            sigma_threshold=sigma1,
            sigma=sigma,
            order=order,
            beta=beta,
        )

    rng = np.random.default_rng(3)
    hists = _histograms(teachers, 3)
    biggest = 0.0
    for _ in range(6):
        run = [hists[int(i)] for i in rng.integers(len(hists), size=2)]
        here = analyse(run)
        for other in _configurations(run):
            there = analyse(other)
            change = abs(here.data_dependent_rdp - there.data_dependent_rdp)
            biggest = max(biggest, change)
            assert change <= here.smooth_sensitivity * (1 + 1e-9)
            assert there.smooth_sensitivity <= math.exp(beta) * here.smooth_sensitivity * (1 + 1e-9)
    assert biggest > 0.05  # not vacuous


# --- the release ---------------------------------------------------------------------------------


def _votes(queries: int, teachers: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((queries, classes), dtype=np.int64)
    for i in range(queries):
        p = np.full(classes, 0.2 / classes)
        p[rng.integers(classes)] += 0.8 if i % 4 else 0.3
        out[i] = rng.multinomial(teachers, p / p.sum())
    return out


def test_gnmax_release_is_the_cost_plus_scaled_gaussian_noise() -> None:
    votes = _votes(40, 200, 10, 0)
    sigma, order, beta, release_sigma = 40.0, 20.0, 0.01, 8.0
    analysis = analyse_gnmax(votes, sigma=sigma, order=order, beta=beta)
    # the analysed cost is pate_rdp's data-dependent RDP at λ (all q below q₀ here)
    assert analysis.data_dependent_rdp == pytest.approx(
        gnmax_rdp(votes, sigma, [order]).rdp[0], rel=1e-12
    )
    assert analysis.data_dependent_rdp < 40 * order / sigma**2  # data-dependent is smaller
    assert analysis.smooth_sensitivity >= analysis.local_sensitivities[0]
    assert analysis.publishable is False
    release = publish_gnmax_rdp(
        votes,
        sigma=sigma,
        order=order,
        beta=beta,
        release_sigma=release_sigma,
        rng=RandomSource(0),
    )
    # the noise: SS_β·σ_s·N(0, 1), on a smaller run (300 releases)
    small = votes[:6]
    base = analyse_gnmax(small, sigma=sigma, order=order, beta=beta)
    assert base.smooth_sensitivity > 0
    noise = [
        publish_gnmax_rdp(
            small,
            sigma=sigma,
            order=order,
            beta=beta,
            release_sigma=release_sigma,
            rng=RandomSource(seed),
        ).noisy_rdp
        - base.data_dependent_rdp
        for seed in range(300)
    ]
    scale = base.smooth_sensitivity * release_sigma
    assert stats.kstest(np.array(noise) / scale, "norm").pvalue > ALPHA
    assert release.release_rdp == ss.gnss_rdp(beta, release_sigma, order)
    assert release.total_rdp == max(release.noisy_rdp, 0.0) + release.release_rdp
    result = release.epsilon(1e-5)
    assert result.epsilon == rdp_to_epsilon([order], [release.total_rdp], 1e-5)[0]
    assert result.details["publishable"].startswith("yes")
    assert release.secure is False and release.queries == 40 and release.mechanism == "gnmax"


def test_smooth_sensitivity_is_monotone_in_beta() -> None:
    votes = _votes(20, 200, 10, 1)
    values = [
        analyse_gnmax(votes, sigma=40.0, order=20.0, beta=b).smooth_sensitivity
        for b in (0.0, 0.001, 0.005, 0.01, 0.02)
    ]
    assert np.all(np.diff(values) <= 0)
    analysis = analyse_gnmax(votes, sigma=40.0, order=20.0, beta=0.0)
    assert values[0] == pytest.approx(float(analysis.local_sensitivities.max()))
    assert values[-1] >= analysis.local_sensitivities[0]


def test_confident_release_matches_the_realised_path_cost() -> None:
    votes = _votes(60, 200, 10, 2)
    aggregator = ConfidentGNMax(threshold=150, sigma_threshold=50, sigma=40.0, max_answered=30)
    aggregation = aggregator.aggregate(votes, RandomSource(0))
    assert not aggregation.checked.all()  # the cap stopped it early
    release = publish_data_dependent_rdp(
        aggregator, votes, aggregation, order=20.0, beta=0.01, release_sigma=8.0
    )
    expected = aggregator.data_dependent_rdp(votes, aggregation, orders=[20.0]).rdp[0]
    checked = aggregation.checked
    assert release.analysis.data_dependent_rdp == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(
        confident_gnmax_rdp(
            votes[checked],
            aggregation.answered[checked],
            threshold=150,
            sigma_threshold=50,
            sigma=40.0,
            orders=[20.0],
        ).rdp[0]
    )
    assert release.queries == int(checked.sum()) and release.mechanism == "confident_gnmax"
    assert release.secure is True  # default: a fresh secure source


def test_dispatch_for_gnmax_and_refusal_for_lnmax() -> None:
    votes = _votes(10, 100, 5, 3)
    aggregation = GNMax(20.0).aggregate(votes, RandomSource(0))
    direct = publish_gnmax_rdp(
        votes, sigma=20.0, order=10.0, beta=0.02, release_sigma=5.0, rng=RandomSource(1)
    )
    via = publish_data_dependent_rdp(
        GNMax(20.0),
        votes,
        aggregation,
        order=10.0,
        beta=0.02,
        release_sigma=5.0,
        rng=RandomSource(1),
    )
    assert via.noisy_rdp == direct.noisy_rdp
    with pytest.raises(DeniableError, match="GNMax or ConfidentGNMax"):
        publish_data_dependent_rdp(
            LNMax(2.0),
            votes,
            LNMax(2.0).aggregate(votes),
            order=10.0,
            beta=0.02,
            release_sigma=5.0,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": 1.0}, "order"),
        ({"beta": -0.1}, "beta"),
        ({"beta": 0.05}, "beta"),  # λ = 20: β must stay below ½·log(20/19) ≈ 0.0256
        ({"release_sigma": 0.0}, "release_sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"votes": np.array([[5, 5], [6, 5]])}, "number of teachers"),
        ({"votes": np.array([[5, -1, 6]])}, "counts >= 0"),
        ({"votes": np.array([[5.0, 5.0]])}, "integer counts"),
    ],
)
def test_bad_input_is_one_line(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "votes": _votes(3, 50, 4, 4),
        "sigma": 20.0,
        "order": 20.0,
        "beta": 0.01,
        "release_sigma": 5.0,
    }
    args.update(kwargs)
    with pytest.raises(DeniableError, match=match) as info:
        publish_gnmax_rdp(**args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_confident_bad_mask_is_one_line() -> None:
    with pytest.raises(DeniableError, match="boolean mask") as info:
        publish_confident_gnmax_rdp(
            _votes(3, 50, 4, 5),
            np.array([1, 0, 1]),
            threshold=30,
            sigma_threshold=5.0,
            sigma=20.0,
            order=10.0,
            beta=0.01,
            release_sigma=5.0,
        )
    assert "\n" not in str(info.value)
