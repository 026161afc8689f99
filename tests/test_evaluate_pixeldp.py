"""PixelDP: the robustness condition, its radius against the authors' bisection, and the layers."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
import torch

from deniable.data import ArrayDataset, load_digits
from deniable.errors import DeniableError
from deniable.evaluate import (
    PixelDPConstruction,
    PixelDPMLP,
    SpectralNormLinear,
    max_epsilon,
    pixeldp,
    pixeldp_certified_accuracy,
    pixeldp_certify,
    pixeldp_radius,
    pixeldp_robust,
)
from deniable.evaluate.pixeldp import DEFAULT_DELTAS


def test_doctests() -> None:
    assert doctest.testmod(pixeldp).failed == 0


def test_robustness_condition_hand_cases() -> None:
    # e^{2·0.5}·0.05 + (1 + e^{0.5})·1e-5 = 0.135914 + 0.0000265 = 0.135941
    assert pixeldp_robust(0.9, 0.05, 0.5, 1e-5)
    assert pixeldp_robust(0.136, 0.05, 0.5, 1e-5)
    assert not pixeldp_robust(0.1359, 0.05, 0.5, 1e-5)
    # δ = 0, e^{2ε} = 2: robust iff lower > 2·upper (strictly, as in Proposition 1)
    eps = math.log(2) / 2
    assert not pixeldp_robust(0.6, 0.3, eps, 0.0)
    assert pixeldp_robust(0.6, 0.29, eps, 0.0)


def test_max_epsilon_closed_form_matches_hand_values_and_bisection() -> None:
    # δ = 0: sup ε = ½ ln(lower/upper), the authors' Laplace-case formula
    assert max_epsilon(0.8, 0.2, 0.0) == pytest.approx(math.log(2))
    # lower <= upper + 2δ: not robust even at ε = 0
    assert max_epsilon(0.5, 0.45, 0.03) == 0.0
    assert max_epsilon(0.9, 0.0, 0.0) == math.inf
    assert max_epsilon(0.9, 0.0, 0.1) == pytest.approx(math.log(8.0))  # (1 + t)·0.1 < 0.9
    rng = np.random.default_rng(0)
    for _ in range(50):
        upper, lower = np.sort(rng.random(2))
        delta = float(rng.choice([0.0, 1e-3, 0.05]))
        eps = max_epsilon(float(lower), float(upper), delta)
        assert eps == pytest.approx(_bisect(lower, upper, delta, hi=50.0), abs=1e-9)


def test_radius_matches_the_authors_bisection_over_delta() -> None:
    # columbia/pixeldp utils/robustness.py: for each δ' bisect the largest ε' <= 1 with the
    # condition, L' = L·(ε'/ε)·(m(δ)/m(δ')) for the construction (L, ε, δ), i.e. σε'/m(δ')
    construction = PixelDPConstruction(attack_bound=0.1, epsilon=1.0, delta=1e-5)
    sigma = construction.sigma()
    m = pixeldp.gaussian_multiplier
    for lower, upper in ((0.9, 0.05), (0.6, 0.3), (0.45, 0.3), (0.99, 0.001)):
        expected = 0.0
        for d in DEFAULT_DELTAS:
            eps = _bisect(lower, upper, d, hi=1.0)
            ratio = (eps / construction.epsilon) * (m(construction.delta) / m(d))
            expected = max(expected, construction.attack_bound * ratio)
        got = pixeldp_radius(lower, upper, sigma)
        assert got.radius == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # a hand value: lower 0.9, upper 0.05, δ' = 0.01 → sup ε' = 1.416 > 1, so ε' = 1 and
    # L' = σ / √(2 ln 125) = 2 / 3.107514
    single = pixeldp_radius(0.9, 0.05, 2.0, deltas=[0.01])
    assert (single.epsilon, single.delta) == (1.0, 0.01)
    assert single.radius == pytest.approx(2 / 3.107514, rel=1e-6)


def test_construction_sigma_is_the_gaussian_mechanism() -> None:
    c = PixelDPConstruction(attack_bound=0.1, epsilon=1.0, delta=1e-5)
    assert c.sigma() == pytest.approx(0.1 * math.sqrt(2 * math.log(1.25e5)))  # 0.48448
    assert c.sigma(2.0) == pytest.approx(2 * c.sigma())
    with pytest.raises(DeniableError, match="epsilon"):
        PixelDPConstruction(attack_bound=0.1, epsilon=2.0, delta=1e-5)
    with pytest.raises(DeniableError, match="delta"):
        PixelDPConstruction(attack_bound=0.1, epsilon=0.5, delta=0.0)


def test_spectral_norm_linear_has_sensitivity_at_most_one() -> None:
    torch.manual_seed(0)
    layer = SpectralNormLinear(10, 6)
    with torch.no_grad():
        layer.linear.weight.mul_(50.0)
    assert layer.sensitivity() == pytest.approx(1.0, rel=1e-5)
    x, x2 = torch.randn(200, 10), torch.randn(200, 10)
    with torch.no_grad():
        moved = (layer(x) - layer(x2)).norm(dim=1)
    assert bool((moved <= (x - x2).norm(dim=1) * (1 + 1e-5)).all())
    with torch.no_grad():
        layer.linear.weight.copy_(torch.eye(6, 10) * 0.5)
    assert layer.sensitivity() == pytest.approx(0.5)  # below 1: left as it is


def _hand_model() -> PixelDPMLP:
    """2 inputs → identity first layer → noise → ReLU → logits (h0, h1): class 0 iff h0 > h1."""
    construction = PixelDPConstruction(attack_bound=0.1, epsilon=1.0, delta=1e-5)
    model = PixelDPMLP(2, 2, construction, hidden=(2,))
    with torch.no_grad():
        model.first.linear.weight.copy_(torch.eye(2))
        model.first.linear.bias.zero_()
        head = model.head[-1]
        assert isinstance(head, torch.nn.Linear)
        head.weight.copy_(torch.eye(2))
        head.bias.zero_()
    return model


def test_certificate_of_a_hand_built_network() -> None:
    model = _hand_model()
    assert model.noise.sigma == pytest.approx(0.48448, rel=1e-4)
    cert = pixeldp_certify(model, torch.tensor([3.0, 0.0]), draws=1000, alpha=0.05, seed=0)
    # every draw votes class 0 (3 + noise > max(0, noise) except w.p. ~1e-10), so the bounds
    # are Clopper–Pearson at α/K = 0.025: (0.025)^(1/1000) and 1 − that
    assert cert.prediction == 0
    assert cert.lower == pytest.approx(0.025 ** (1 / 1000))
    assert cert.upper == pytest.approx(1 - 0.025 ** (1 / 1000))
    assert cert.robust
    # the construction δ is in the grid, and ε' = 1 holds there: radius >= the attack bound
    assert cert.radius.radius >= 0.1
    expected = pixeldp_radius(cert.lower, cert.upper, model.noise.sigma).radius
    assert cert.radius.radius == pytest.approx(max(expected, 0.1))
    again = pixeldp_certify(model, torch.tensor([3.0, 0.0]), draws=1000, alpha=0.05, seed=0)
    assert again == cert  # seeded
    on_edge = pixeldp_certify(model, torch.tensor([0.05, 0.0]), draws=1000, seed=0)
    # near the boundary (P[class 0] ≈ 0.53): not robust at L = 0.1, only a tiny radius remains
    assert not on_edge.robust and on_edge.radius.radius < 0.05
    json.dumps(cert.to_dict(), allow_nan=False)


def test_noise_is_on_in_eval_mode_and_certified_accuracy_reads_it() -> None:
    model = _hand_model().eval()
    x = torch.zeros(4, 2)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
    data = ArrayDataset(
        features=np.array([[3.0, 0.0], [0.0, 3.0], [0.05, 0.0]], dtype=np.float32),
        labels=np.array([0, 1, 1]),
        num_classes=2,
        name="hand",
    )
    out = pixeldp_certified_accuracy(model, data, draws=500)
    assert out["certified_accuracy"] == pytest.approx(2 / 3)
    assert out["attack_bound"] == 0.1 and out["n"] == 3
    with pytest.raises(DeniableError, match="PixelDPNoise"):
        pixeldp_certify(torch.nn.Linear(2, 2), torch.zeros(2))


def test_a_pixeldp_network_trained_on_digits_certifies_most_test_points() -> None:
    split = load_digits(seed=0)
    torch.manual_seed(0)
    construction = PixelDPConstruction(attack_bound=0.1, epsilon=1.0, delta=0.05)
    model = PixelDPMLP(64, 10, construction, hidden=(64,))
    x, y = split.train.to_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    order = np.random.default_rng(0)
    for _ in range(15):  # trained with the noise on, as in the paper
        perm = torch.as_tensor(order.permutation(len(y)))
        for start in range(0, len(y), 64):
            idx = perm[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert model.first.sensitivity() <= 1 + 1e-6  # training cannot break the bound
    out = pixeldp_certified_accuracy(model, split.test, draws=300, limit=60)
    assert out["accuracy"] >= 0.8  # measured 0.90
    assert 0.4 <= out["certified_accuracy"] <= out["accuracy"]  # measured 0.67 at L = 0.1


def _bisect(lower: float, upper: float, delta: float, hi: float) -> float:
    """The largest ε in [0, hi] with the robustness condition, by bisection (0 if none)."""
    if not pixeldp_robust(lower, upper, 0.0, delta):
        return 0.0
    if pixeldp_robust(lower, upper, hi, delta):
        return hi
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pixeldp_robust(lower, upper, mid, delta) else (lo, mid)
    return lo
