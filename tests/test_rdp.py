"""The RDP accountant against independent references: high-precision integration (mpmath) of the
Rényi divergences, direct sums over small distributions, the published reference values, the
exact Gaussian (Balle & Wang 2018), and dp-accounting (Google's library, a test-only oracle)."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp import rdp_privacy_accountant

from deniable import accounting
from deniable.accounting import gaussian_exact, rdp, rdp_subsampled
from deniable.errors import InvalidParameterError, UnsupportedEventError
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
)

REPLACE = Neighbouring.REPLACE_ONE


# --- References computed here, independently of the implementation ---------------------------


def mp_divergence(
    log_p: object, log_q: object, alpha: float, breakpoints: list[object], dps: int = 30
) -> float:
    """D_α(P‖Q) = log ∫ p^α q^{1−α} / (α − 1) by mpmath quadrature (densities given as logs)."""
    with mp.workdps(dps):
        a = mp.mpf(alpha)
        integral = mp.quad(lambda x: mp.exp(a * log_p(x) + (1 - a) * log_q(x)), breakpoints)
        return float(mp.log(integral) / (a - 1))


def mp_sampled_gaussian(q: float, sigma: float, alpha: float) -> float:
    """log E_{N(0,σ²)}[((1−q) + q·e^{(2x−1)/(2σ²)})^α]/(α−1), integrating the integrand minus
    its value at q = 0 so that tiny values of A_α − 1 keep their precision."""
    with mp.workdps(30):
        q_, s, a = mp.mpf(q), mp.mpf(sigma), mp.mpf(alpha)

        def f(x: mp.mpf) -> mp.mpf:
            ratio = mp.exp((2 * x - 1) / (2 * s * s))
            return mp.npdf(x, 0, s) * (((1 - q_) + q_ * ratio) ** a - 1)

        points = {-mp.inf, mp.mpf(0), a, mp.inf}
        if q < 1:
            points.add(s * s * mp.log(1 / q_ - 1) + mp.mpf(1) / 2)
        a_minus_1 = mp.quad(f, sorted(points))
        return float(mp.log1p(a_minus_1) / (a - 1))


def direct_divergence(p: np.ndarray, q: np.ndarray, alpha: float) -> float:
    """D_α(P‖Q) of two finite distributions, summed in high precision."""
    with mp.workdps(40):
        a = mp.mpf(alpha)
        total = mp.fsum(
            mp.mpf(pi) ** a * mp.mpf(qi) ** (1 - a) for pi, qi in zip(p, q, strict=True)
        )
        return float(mp.log(total) / (a - 1))


def laplace_log_pdf(loc: float, scale: float) -> object:
    return lambda x: -abs(x - loc) / scale - mp.log(2 * scale)


def mixture_log_pdf(parts: list[tuple[float, object]]) -> object:
    return lambda x: mp.log(mp.fsum(w * mp.exp(f(x)) for w, f in parts))


def gaussian_log_pdf(loc: float, sigma: float) -> object:
    return lambda x: mp.log(mp.npdf(x, loc, sigma))


def google_rdp_epsilon(
    event: dp_event.DpEvent, delta: float, relation: NeighboringRelation | None = None
) -> float:
    acc = rdp_privacy_accountant.RdpAccountant(
        orders=list(rdp.DEFAULT_ORDERS),
        neighboring_relation=relation or NeighboringRelation.ADD_OR_REMOVE_ONE,
    )
    acc.compose(event)
    return float(acc.get_epsilon(delta))


# --- The Poisson-sampled Gaussian ---------------------------------------------------------------


@pytest.mark.parametrize("q", [1e-3, 0.01, 0.1, 1.0])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 5.0])
def test_sampled_gaussian_matches_high_precision_integration(q: float, sigma: float) -> None:
    orders = [2.0, 3.0, 8.0, 1.5, 4.7]
    ours = rdp.compute_rdp(PoissonSampledEvent(q, GaussianEvent(sigma)), orders)
    for order, value in zip(orders, ours, strict=True):
        assert value == pytest.approx(mp_sampled_gaussian(q, sigma, order), rel=1e-6), order


@pytest.mark.parametrize("order", [1.1, 2.5, 3.0, 40.0, 100.5])
def test_sampled_gaussian_is_accurate_for_tiny_sampling_rates(order: float) -> None:
    ours = rdp.compute_rdp(PoissonSampledEvent(1e-4, GaussianEvent(1.0)), [order])[0]
    assert ours == pytest.approx(mp_sampled_gaussian(1e-4, 1.0, order), rel=1e-6)


def test_sampled_gaussian_large_orders_are_finite_and_increasing() -> None:
    orders = np.array([64.0, 128.0, 256.0, 512.0, 1024.0, 1024.5])
    ours = rdp.compute_rdp(PoissonSampledEvent(1e-4, GaussianEvent(0.8)), orders)
    assert np.all(np.isfinite(ours)) and np.all(np.diff(ours) > 0)
    # Far beyond the subsampling regime the bound tends to the unsampled α/(2σ²).
    assert ours[-2] <= 1024 / (2 * 0.8**2)


@pytest.mark.parametrize("entry", [0, 1])
def test_published_reference_values(accounting_reference: dict, entry: int) -> None:
    ref = accounting_reference["poisson_subsampled_gaussian"][entry]
    event = SelfComposedEvent(
        PoissonSampledEvent(ref["sample_rate"], GaussianEvent(ref["noise_multiplier"])),
        ref["steps"],
    )
    result = rdp.epsilon(event, ref["delta"])
    assert result.accountant == "rdp" and result.details["order"] > 1
    assert 0.9 * ref["rdp_reference"] <= result.epsilon <= ref["rdp_reference"]


@pytest.mark.parametrize(
    ("q", "sigma", "steps", "delta"),
    [
        (256 / 60000, 1.1, 14063, 1e-5),
        (0.01, 1.0, 1000, 1e-5),
        (0.1, 2.0, 100, 1e-6),
        (1e-3, 0.8, 10000, 1e-5),
        (0.05, 5.0, 500, 1e-3),
        (0.3, 0.7, 20, 1e-5),
    ],
)
def test_poisson_gaussian_against_dp_accounting(
    q: float, sigma: float, steps: int, delta: float
) -> None:
    ours = rdp.epsilon(
        SelfComposedEvent(PoissonSampledEvent(q, GaussianEvent(sigma)), steps), delta
    ).epsilon
    theirs = google_rdp_epsilon(
        dp_event.SelfComposedDpEvent(
            dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps
        ),
        delta,
    )
    assert theirs * 0.97 <= ours <= theirs * (1 + 1e-6)


@pytest.mark.parametrize("delta", [1e-5, 1e-8])
@pytest.mark.parametrize(("sigma", "steps"), [(5.0, 100), (1.0, 1), (2.0, 50), (20.0, 1000)])
def test_unsampled_gaussian_composition_bounds_the_exact_value(
    sigma: float, steps: int, delta: float
) -> None:
    exact = gaussian_exact.gaussian_epsilon(math.sqrt(steps) / sigma, delta)
    event = SelfComposedEvent(PoissonSampledEvent(1.0, GaussianEvent(sigma)), steps)
    ours = rdp.epsilon(event, delta).epsilon
    assert exact <= ours <= 1.10 * exact


# --- Sampling without replacement ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m", "sigma", "steps", "delta"),
    [
        (60000, 256, 1.1, 1000, 1e-5),
        (1000, 10, 2.0, 500, 1e-5),
        (1000, 100, 5.0, 100, 1e-6),
        (10000, 100, 30.0, 10000, 1e-5),
        (100, 50, 3.0, 10, 1e-5),
    ],
)
def test_without_replacement_against_dp_accounting(
    n: int, m: int, sigma: float, steps: int, delta: float
) -> None:
    """At most dp-accounting's value; within 3 % of it for small sampling rates. At m/n = 1/2
    ours is lower (8 % here): the joint-convexity cap log(1 − γ + γ·e^{(α−1)ε(α)})/(α − 1)
    beats Thm. 9 at small orders, and dp-accounting does not apply it."""
    # dp-accounting's noise multiplier is σ over the replace-one sensitivity.
    inner = GaussianEvent(sigma, replace_one_sensitivity=1.0)
    ours = rdp.epsilon(
        SelfComposedEvent(SampledWithoutReplacementEvent(n, m, inner), steps),
        delta,
        relation=REPLACE,
    ).epsilon
    theirs = google_rdp_epsilon(
        dp_event.SelfComposedDpEvent(
            dp_event.SampledWithoutReplacementDpEvent(n, m, dp_event.GaussianDpEvent(sigma)),
            steps,
        ),
        delta,
        NeighboringRelation.REPLACE_ONE,
    )
    assert ours <= theirs * (1 + 1e-6)
    if m / n <= 0.1:
        assert ours >= theirs * 0.97


def test_without_replacement_default_sensitivity_doubles_under_replace_one() -> None:
    wide = SampledWithoutReplacementEvent(1000, 10, GaussianEvent(2.0))
    explicit = SampledWithoutReplacementEvent(
        1000, 10, GaussianEvent(1.0, replace_one_sensitivity=1)
    )
    orders = [2.0, 5.5, 32.0]
    np.testing.assert_allclose(
        rdp.compute_rdp(wide, orders, REPLACE), rdp.compute_rdp(explicit, orders, REPLACE)
    )


@pytest.mark.parametrize("order", [2, 3, 6])
def test_without_replacement_bounds_a_concrete_pair(order: int) -> None:
    """Sum of one-per-unit contributions in [−1, 1], Laplace or Gaussian noise: the unit that is
    replaced (+1 → −1) lands in the batch with probability γ, so the outputs are
    (1−γ)·M(0) + γ·M(+1) versus (1−γ)·M(0) + γ·M(−1); any valid bound is at least that."""
    gamma, scale = 0.1, 2.0
    for noise, log_pdf, points in [
        (LaplaceEvent(scale), laplace_log_pdf, [-mp.inf, -1, 0, 1, mp.inf]),
        (GaussianEvent(scale), gaussian_log_pdf, [-mp.inf, 0, 2 * order, mp.inf]),
    ]:
        centre = (1 - gamma, log_pdf(0.0, scale))
        p = mixture_log_pdf([centre, (gamma, log_pdf(1.0, scale))])
        q = mixture_log_pdf([centre, (gamma, log_pdf(-1.0, scale))])
        lower = mp_divergence(p, q, order, points)
        event = SampledWithoutReplacementEvent(100, 10, noise)
        ours = rdp.compute_rdp(event, [order], REPLACE)[0]
        unsampled = rdp.compute_rdp(noise, [order], REPLACE)[0]
        assert lower <= ours <= unsampled


def test_pearson_vajda_moments_against_integration() -> None:
    z = 30.0
    moments = rdp_subsampled._log_even_moments(z, 8)
    for k in (2, 4, 8):
        with mp.workdps(60):
            zz = mp.mpf(z)

            def f(x: mp.mpf, k: int = k, zz: mp.mpf = zz) -> mp.mpf:
                return mp.npdf(x, 0, zz) * mp.expm1((2 * x - 1) / (2 * zz * zz)) ** k

            expected = float(mp.log(mp.quad(f, [-mp.inf, 0, mp.inf])))
        assert moments[k] == pytest.approx(expected, rel=1e-9)


# --- Poisson sampling of other mechanisms (general upper bound) --------------------------------


@pytest.mark.parametrize("order", [2, 3, 5, 2.5])
def test_poisson_laplace_bound_is_an_upper_bound_within_log3(order: float) -> None:
    q, scale = 0.05, 1.0
    base = (1 - q, laplace_log_pdf(0.0, scale))
    mixture = mixture_log_pdf([base, (q, laplace_log_pdf(1.0, scale))])
    plain = laplace_log_pdf(0.0, scale)
    points = [-mp.inf, 0, 1, mp.inf]
    exact = max(
        mp_divergence(mixture, plain, order, points), mp_divergence(plain, mixture, order, points)
    )
    ours = rdp.compute_rdp(PoissonSampledEvent(q, LaplaceEvent(scale)), [order])[0]
    assert exact <= ours <= exact + math.log(3) / (order - 1)


def test_general_poisson_bound_is_above_the_exact_sampled_gaussian() -> None:
    orders = np.array([1.5, 2.0, 3.0, 7.5, 20.0, 64.0])
    q, z = 0.02, 1.3
    exact = rdp_subsampled.poisson_gaussian_rdp(q, z, orders)
    general = rdp_subsampled.poisson_general_rdp(q, orders, lambda a: a / (2 * z * z))
    assert np.all(general >= exact * (1 - 1e-12))
    assert np.all(general <= orders / (2 * z * z))


@pytest.mark.parametrize(
    "inner", [RandomizedResponseEvent(1.0, 4), PureDpEvent(2.0), DiscreteGaussianEvent(1.5)]
)
def test_poisson_sampling_of_other_mechanisms_amplifies(inner: PrivacyEvent) -> None:
    orders = [1.5, 2.0, 8.0, 32.0]
    sampled = rdp.compute_rdp(PoissonSampledEvent(0.01, inner), orders)
    plain = rdp.compute_rdp(inner, orders)
    assert np.all(sampled > 0) and np.all(sampled < plain)


# --- Base mechanisms --------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "sensitivity"), [(1.0, 1.0), (0.3, 1.0), (5.0, 2.0)])
@pytest.mark.parametrize("order", [1.1, 2.0, 3.5, 20.0])
def test_laplace_matches_integration(scale: float, sensitivity: float, order: float) -> None:
    p, q = laplace_log_pdf(0.0, scale), laplace_log_pdf(sensitivity, scale)
    expected = mp_divergence(p, q, order, [-mp.inf, 0, sensitivity, mp.inf])
    ours = rdp.compute_rdp(LaplaceEvent(scale, sensitivity), [order])[0]
    assert ours == pytest.approx(expected, rel=1e-9)


def rr_pair(eps: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    norm = math.exp(eps) + k - 1
    p = np.full(k, 1 / norm)
    p[0] = math.exp(eps) / norm
    return p, np.roll(p, 1)


@pytest.mark.parametrize(("eps", "k"), [(0.5, 2), (1.0, 2), (1.0, 5), (4.0, 10), (0.1, 3)])
@pytest.mark.parametrize("order", [1.1, 2.0, 7.3, 64.0])
def test_randomized_response_matches_direct_sum(eps: float, k: int, order: float) -> None:
    p, q = rr_pair(eps, k)
    expected = max(direct_divergence(p, q, order), direct_divergence(q, p, order))
    ours = rdp.compute_rdp(RandomizedResponseEvent(eps, k), [order])[0]
    assert ours == pytest.approx(min(expected, eps), rel=1e-9)


@pytest.mark.parametrize("eps", [0.1, 1.0, 3.0])
def test_pure_dp_is_binary_randomized_response(eps: float) -> None:
    p, q = rr_pair(eps, 2)
    orders = [1.5, 4.0, 100.0]
    expected = [direct_divergence(p, q, a) for a in orders]
    np.testing.assert_allclose(rdp.compute_rdp(PureDpEvent(eps), orders), expected, rtol=1e-9)
    assert np.all(rdp.compute_rdp(PureDpEvent(eps), orders) <= eps)


def discrete_pmf(log_weights: np.ndarray) -> np.ndarray:
    w = np.exp(log_weights - log_weights.max())
    return w / w.sum()


@pytest.mark.parametrize("order", [1.5, 2.0, 10.0])
def test_discrete_mechanisms_against_direct_sums(order: float) -> None:
    sigma, scale = 2.0, 1.5
    x = np.arange(-60, 61, dtype=float)  # the mass beyond is below e^{-450}
    gauss = [discrete_pmf(-((x - c) ** 2) / (2 * sigma**2)) for c in (0.0, 1.0)]
    x = np.arange(-600, 601, dtype=float)
    laplace = [discrete_pmf(-np.abs(x - c) / scale) for c in (0.0, 1.0)]
    exact_gauss = direct_divergence(gauss[0], gauss[1], order)
    exact_laplace = direct_divergence(laplace[0], laplace[1], order)
    assert exact_gauss <= rdp.compute_rdp(DiscreteGaussianEvent(sigma), [order])[0]
    # A unit shift of the discrete Laplace has privacy loss ±1/scale only: exactly binary RR.
    ours = rdp.compute_rdp(DiscreteLaplaceEvent(scale), [order])[0]
    assert ours == pytest.approx(exact_laplace, rel=1e-12)


# --- Conversions ------------------------------------------------------------------------------


def test_rdp_to_epsilon_hand_computed() -> None:
    # α = 2: 1.0 + log(1/2) − (log 1e-5 + log 2)/1 = 11.1266...
    # α = 3: 1.5 + log(2/3) − (log 1e-5 + log 3)/2 = 1.5 − 0.4054651 + 5.2071566 = 6.3016915
    eps, order = rdp.rdp_to_epsilon([2.0, 3.0], [1.0, 1.5], 1e-5)
    assert order == 3.0
    assert eps == pytest.approx(6.30169148, abs=1e-7)


def test_rdp_to_delta_hand_computed() -> None:
    # α = 3, ε = 3: log δ = 2·(1.5 − 3 + log(2/3)) − log 3 = −4.9095426 (α = 2 gives −3.3863)
    delta, order = rdp.rdp_to_delta([2.0, 3.0], [1.0, 1.5], 3.0)
    assert order == 3.0
    assert delta == pytest.approx(math.exp(-4.90954260), rel=1e-7)


def test_conversions_are_inverse_and_never_worse_than_classic() -> None:
    orders = np.array(rdp.DEFAULT_ORDERS)
    curve = rdp.compute_rdp(SelfComposedEvent(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 500))
    eps, _ = rdp.rdp_to_epsilon(orders, curve, 1e-6)
    delta, _ = rdp.rdp_to_delta(orders, curve, eps)
    assert delta <= 1e-6 * (1 + 1e-9)
    classic = float(np.min(curve + math.log(1e6) / (orders - 1)))
    assert eps < classic


def test_delta_and_epsilon_agree_through_the_dispatcher() -> None:
    event = SelfComposedEvent(PoissonSampledEvent(0.02, GaussianEvent(0.9)), 300)
    eps = accounting.epsilon(event, 1e-5, accountant="rdp").epsilon
    assert eps == rdp.epsilon(event, 1e-5).epsilon
    assert accounting.delta(event, eps, accountant="rdp") == pytest.approx(1e-5, rel=1e-6)


# --- Composition, trivial events and pure-DP caps ---------------------------------------------


def test_composition_adds_and_subsampling_at_rate_one_is_the_inner_event() -> None:
    orders = [1.5, 2.0, 12.0]
    g, lap = GaussianEvent(1.5), LaplaceEvent(2.0)
    composed = rdp.compute_rdp(ComposedEvent([g, lap, g]), orders)
    expected = 2 * rdp.compute_rdp(g, orders) + rdp.compute_rdp(lap, orders)
    np.testing.assert_allclose(composed, expected)
    np.testing.assert_allclose(
        rdp.compute_rdp(SelfComposedEvent(lap, 7), orders), 7 * rdp.compute_rdp(lap, orders)
    )
    np.testing.assert_allclose(
        rdp.compute_rdp(PoissonSampledEvent(1.0, lap), orders), rdp.compute_rdp(lap, orders)
    )


def test_trivial_events_and_pure_dp_cap() -> None:
    assert rdp.epsilon(NoOpEvent(), 1e-5).epsilon == 0.0
    assert rdp.epsilon(NonPrivateEvent(), 1e-5).epsilon == math.inf
    assert rdp.delta(NonPrivateEvent(), 10.0) == 1.0
    result = rdp.epsilon(PureDpEvent(0.5), 1e-5)
    assert result.epsilon == 0.5 and result.details["bound"] == "pure_dp"
    assert rdp.delta(LaplaceEvent(1.0), 1.0) == 0.0


# --- Bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("orders", [[1.0], [0.5, 2.0], [], [math.inf], [math.nan]])
def test_orders_must_exceed_one(orders: list[float]) -> None:
    with pytest.raises(InvalidParameterError, match="orders"):
        rdp.compute_rdp(GaussianEvent(1.0), orders)


def test_wrong_relation_for_sampling_is_refused() -> None:
    with pytest.raises(UnsupportedEventError, match="SampledWithoutReplacementEvent"):
        rdp.epsilon(SampledWithoutReplacementEvent(100, 10, GaussianEvent(1.0)), 1e-5)
    with pytest.raises(UnsupportedEventError, match="add/remove"):
        rdp.epsilon(PoissonSampledEvent(0.1, GaussianEvent(1.0)), 1e-5, relation=REPLACE)


def test_unknown_events_and_bad_numbers_are_refused() -> None:
    class Mystery(PrivacyEvent):
        pass

    with pytest.raises(UnsupportedEventError, match="Mystery"):
        rdp.epsilon(ComposedEvent([GaussianEvent(1.0), Mystery()]), 1e-5)
    with pytest.raises(InvalidParameterError, match="delta"):
        rdp.epsilon(GaussianEvent(1.0), 0.0)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        rdp.delta(GaussianEvent(1.0), -1.0)
    with pytest.raises(InvalidParameterError, match="rdp"):
        rdp.rdp_to_epsilon([2.0, 3.0], [1.0], 1e-5)


def test_vector_laplace_uses_the_pure_dp_bound() -> None:
    orders = np.array([2.0, 8.0])
    one = rdp.compute_rdp(LaplaceEvent(2.0), orders)
    vector = rdp.compute_rdp(LaplaceEvent(2.0, dimension=3), orders)
    pure = rdp.compute_rdp(PureDpEvent(0.5), orders)
    np.testing.assert_allclose(vector, pure)
    assert np.all(vector >= one)
