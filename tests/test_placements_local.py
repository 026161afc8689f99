"""Local DP placements: input perturbation per record and the noise layer per forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from deniable import accounting
from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.events import ComposedEvent, GaussianEvent, LaplaceEvent, RandomizedResponseEvent
from deniable.mechanisms import RandomSource
from deniable.models import MLP
from deniable.placements import (
    Guarantee,
    NoiseLayer,
    gaussian_features,
    insert_noise_layer,
    laplace_features,
    randomize_categories,
)

ALPHA = 1e-3  # each KS test below wrongly fails with probability 0.1 %


def test_laplace_features_clamp_and_noise_scale() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, size=(4000, 4))
    low, high = np.array([0.0, 0.0, -1.0, 0.0]), np.array([1.0, 2.0, 1.0, 0.5])
    out = laplace_features(x, low=low, high=high, epsilon=2.0, rng=RandomSource(1))
    diameter = 1.0 + 2.0 + 2.0 + 0.5
    scale = diameter / 2.0
    noise = out.value - np.clip(x, low, high)
    assert stats.kstest(noise.ravel(), stats.laplace(scale=scale).cdf).pvalue > ALPHA
    assert out.event == LaplaceEvent(
        scale=scale, sensitivity=diameter, replace_one_sensitivity=diameter, dimension=4
    )
    assert out.guarantee is Guarantee.LOCAL_DP
    # the per-record ε round-trips through every accountant
    assert out.epsilon(1e-6, accountant="basic").epsilon == pytest.approx(2.0, rel=1e-12)
    assert out.epsilon(1e-6, accountant="rdp").epsilon == pytest.approx(2.0, rel=1e-9)
    assert out.epsilon(1e-6).epsilon == pytest.approx(2.0, abs=1e-3)
    assert out.epsilon(1e-6).to_dict()["guarantee"] == "local-dp"


def test_gaussian_features_calibrated_and_round_trip() -> None:
    x = np.random.default_rng(1).uniform(-3, 3, size=(3000, 3))
    out = gaussian_features(x, low=-1.0, high=1.0, epsilon=1.0, delta=1e-5, rng=RandomSource(2))
    diameter = math.sqrt(3) * 2.0
    sigma = out.details["sigma"]
    assert isinstance(sigma, float)
    assert gaussian_epsilon(diameter / sigma, 1e-5) == pytest.approx(1.0, rel=1e-6)
    noise = out.value - np.clip(x, -1, 1)
    assert stats.kstest(noise.ravel(), stats.norm(scale=sigma).cdf).pvalue > ALPHA
    assert out.event == GaussianEvent(sigma, diameter, replace_one_sensitivity=diameter)
    assert out.epsilon(1e-5).epsilon == pytest.approx(1.0, abs=2e-3)  # pld


def test_randomize_categories_composes_columns() -> None:
    codes = np.stack([np.arange(600) % 3, np.arange(600) % 5], axis=1)
    out = randomize_categories(
        codes, num_categories=[3, 5], epsilon=[0.5, 1.0], rng=RandomSource(3)
    )
    assert out.event == ComposedEvent(
        [RandomizedResponseEvent(0.5, 3), RandomizedResponseEvent(1.0, 5)]
    )
    assert out.epsilon(1e-6, accountant="basic").epsilon == pytest.approx(1.5, rel=1e-12)
    assert out.epsilon(1e-6, accountant="pld").epsilon <= 1.5 + 1e-3
    assert out.value.shape == codes.shape and out.value.max() < 5


def test_noise_layer_clips_adds_noise_and_states_its_event() -> None:
    c, z = 2.0, 1.5
    layer = NoiseLayer(clip_norm=c, noise_multiplier=z, seed=0)
    big = torch.full((4000, 16), 10.0)  # norm 40: clipped to 2, i.e. every entry 0.5
    out = layer(big)
    noise = (out - 0.5).numpy().ravel()
    assert stats.kstest(noise, stats.norm(scale=z * c).cdf).pvalue > ALPHA
    small = torch.full((1, 16), 0.01)  # norm 0.04 < C: not scaled
    zero_noise = NoiseLayer(clip_norm=c, noise_multiplier=1e-9, seed=0)(small)
    torch.testing.assert_close(zero_noise, small, atol=1e-6, rtol=0)
    # one pass: Gaussian with sensitivity 2C (any two inputs) and noise zC: multiplier z/2
    assert layer.event() == GaussianEvent(z * c, 2 * c, replace_one_sensitivity=2 * c)
    claim = layer.epsilon(1e-5)
    assert claim.epsilon == pytest.approx(gaussian_epsilon(2 / z, 1e-5), abs=2e-3)
    assert claim.guarantee is Guarantee.LOCAL_DP and "not the training set" in claim.unit
    # k passes over one input compose: one Gaussian with multiplier z/(2√k)
    three = accounting.epsilon(layer.event(passes=3), 1e-5, accountant="rdp").epsilon
    one_equiv = accounting.epsilon(
        GaussianEvent(z * c / math.sqrt(3), 2 * c), 1e-5, accountant="rdp"
    ).epsilon
    assert three == pytest.approx(one_equiv, rel=1e-9)


def test_insert_noise_layer_into_a_model() -> None:
    torch.manual_seed(0)
    model = MLP(8, 3, hidden=(16,))
    layer = NoiseLayer(clip_norm=1.0, noise_multiplier=0.5, seed=1)
    x = torch.randn(5, 8)
    clean = model(x)
    handle = insert_noise_layer(model, "layers.2", layer)
    noisy_a, noisy_b = model(x), model(x)
    assert not torch.allclose(noisy_a, clean) and not torch.allclose(noisy_a, noisy_b)
    handle.remove()
    torch.testing.assert_close(model(x), clean)
    with pytest.raises(ValueError, match="after"):
        insert_noise_layer(model, "nope", layer)
