"""Feature normalisation: GroupNorm (free) and private channel statistics (a composed event)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from deniable import accounting
from deniable.accounting import calibrate
from deniable.errors import DeniableError
from deniable.events import ComposedEvent, GaussianEvent, NonPrivateEvent, NoOpEvent
from deniable.features.normalize import (
    channel_stats,
    group_normalize,
    noise_multiplier_after,
    private_channel_stats,
    standardize,
)
from deniable.mechanisms import RandomSource


def _features(n: int = 400, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.01, 0.3, 81).reshape(1, 81, 1, 1)
    return torch.rand(n, 81, 7, 7, generator=gen) * scale


def _gdp_epsilon(mu: float, delta: float) -> float:
    """ε at δ of μ-GDP (Balle & Wang 2018, Thm. 8; Dong, Roth & Su 2019, Cor. 1)."""

    def gap(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 100.0, xtol=1e-12)


def test_group_normalize_is_torch_groupnorm_and_per_example() -> None:
    x = _features(6)
    out = group_normalize(x, 27)
    reference = torch.nn.GroupNorm(27, 81, affine=False)(x)
    torch.testing.assert_close(out, reference)
    # Each example's output depends on that example only: no statistic of the others is used.
    other = torch.cat([x[:1], 5.0 * torch.rand(5, 81, 7, 7)])
    torch.testing.assert_close(group_normalize(other, 27)[0], out[0])
    with pytest.raises(ValueError, match="num_groups"):
        group_normalize(x, 10)


def test_exact_stats_and_standardize() -> None:
    x = _features()
    stats = channel_stats(x)
    assert isinstance(stats.event, NonPrivateEvent)
    z = standardize(x, stats, eps=1e-12)
    per_channel = z.transpose(0, 1).reshape(81, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-4
    variances = per_channel.var(dim=1, unbiased=False)
    torch.testing.assert_close(variances, torch.ones(81), atol=1e-3, rtol=0)


def test_standardize_zeroes_channels_with_no_variance_left() -> None:
    x = _features()
    stats = channel_stats(x)
    var = stats.var.clone()
    var[5] = 0.0
    z = standardize(x, type(stats)(stats.mean, var, stats.event))
    assert z[:, 5].abs().max() == 0
    assert torch.isfinite(z).all()


def test_private_stats_event_and_its_closed_form_epsilon() -> None:
    stats = private_channel_stats(
        _features(), noise_multiplier=8.0, mean_clip=0.5, square_clip=0.2, rng=RandomSource(0)
    )
    assert stats.event == ComposedEvent(
        [GaussianEvent(sigma=4.0, sensitivity=0.5), GaussianEvent(sigma=1.6, sensitivity=0.2)]
    )
    # Two Gaussian mechanisms with noise multiplier 8 are (√2/8)-GDP together: exact ε at δ.
    expected = _gdp_epsilon(math.sqrt(2) / 8, 1e-5)
    got = accounting.epsilon(stats.event, 1e-5, accountant="pld").epsilon
    assert got == pytest.approx(expected, rel=2e-3)
    assert got >= expected * (1 - 1e-4)  # the PLD rounds pessimistically


def test_private_stats_sensitivity_by_brute_force() -> None:
    """With the same seed the noise is identical, so n·μ̂ of neighbouring datasets differ by
    exactly the added example's clipped mean vector: norm ≤ c_m, = c_m when it is clipped."""
    x = _features(50)
    extra = 100.0 * torch.ones(1, 81, 7, 7)
    kwargs = {"noise_multiplier": 8.0, "mean_clip": 0.5, "square_clip": 0.2}
    small = private_channel_stats(x, rng=RandomSource(7), **kwargs)
    large = private_channel_stats(torch.cat([x, extra]), rng=RandomSource(7), **kwargs)
    moved = (51 * large.mean.double() - 50 * small.mean.double()).norm()
    assert float(moved) == pytest.approx(0.5, rel=1e-5)
    # An example inside the bound moves it by its own mean vector (outputs are float32).
    inside = 0.1 * x[:1]
    own = float(inside.double().mean(dim=(2, 3)).norm())
    assert own < 0.5
    ordinary = private_channel_stats(torch.cat([x, inside]), rng=RandomSource(7), **kwargs)
    moved = (51 * ordinary.mean.double() - 50 * small.mean.double()).norm()
    assert float(moved) == pytest.approx(own, rel=1e-5)


def test_private_stats_are_close_to_the_exact_ones_on_enough_data() -> None:
    x = _features(4000)
    exact = channel_stats(x)
    noisy = private_channel_stats(
        x, noise_multiplier=8.0, mean_clip=2.0, square_clip=1.0, rng=RandomSource(3)
    )
    assert noisy.details["clipped_fraction_mean"] == 0.0
    # Noise std of μ̂ is σ·c_m/n = 0.004: 5 std bounds every one of the 81 channels except with
    # probability < 81·6e-7.
    assert (noisy.mean - exact.mean).abs().max() < 5 * 8.0 * 2.0 / 4000


def test_secure_default_and_bad_parameters() -> None:
    stats = private_channel_stats(_features(20), noise_multiplier=8, mean_clip=1, square_clip=1)
    assert stats.details["secure"] == "True"
    with pytest.raises(ValueError, match="mean_clip"):
        private_channel_stats(_features(20), noise_multiplier=8, mean_clip=0, square_clip=1)
    with pytest.raises(ValueError, match="features"):
        private_channel_stats(
            torch.full((2, 3, 4, 4), float("nan")), noise_multiplier=8, mean_clip=1, square_clip=1
        )


def test_noise_multiplier_after_composes_the_prior() -> None:
    """RDP here to keep the test fast (a PLD calibration takes seconds); the pipeline test
    covers the PLD path."""
    prior = ComposedEvent([GaussianEvent(8.0), GaussianEvent(8.0)])
    q, steps, delta = 1.0, 50, 1e-5  # q = 1: closed-form RDP, fast
    common = {"target_epsilon": 3.0, "delta": delta, "sample_rate": q, "steps": steps}
    alone = noise_multiplier_after(NoOpEvent(), accountant="rdp", **common)
    after = noise_multiplier_after(prior, accountant="rdp", **common)
    assert after > alone
    assert alone == pytest.approx(
        calibrate.noise_multiplier(3.0, delta, q, steps, accountant="rdp").noise_multiplier
    )
    training = calibrate.dpsgd_event(after, q, steps)
    eps = accounting.epsilon(ComposedEvent([prior, training]), delta, accountant="rdp").epsilon
    assert 2.99 < eps <= 3.0
    # Composition costs less than the sum of the parts, more than either part.
    eps_prior = accounting.epsilon(prior, delta, accountant="rdp").epsilon
    eps_train = accounting.epsilon(training, delta, accountant="rdp").epsilon
    assert max(eps_prior, eps_train) < eps < eps_prior + eps_train


def test_noise_multiplier_after_refuses_an_overspent_or_non_private_prior() -> None:
    common = {"target_epsilon": 1.0, "delta": 1e-5, "sample_rate": 0.1, "steps": 10}
    with pytest.raises(DeniableError, match="preprocessing alone"):
        noise_multiplier_after(GaussianEvent(0.5), accountant="rdp", **common)
    with pytest.raises(DeniableError, match="not private"):
        noise_multiplier_after(NonPrivateEvent(), **common)


def test_variance_estimate_is_clamped_at_zero() -> None:
    x = _features(30)
    stats = private_channel_stats(
        x, noise_multiplier=50.0, mean_clip=1.0, square_clip=1.0, rng=RandomSource(1)
    )
    assert (stats.var >= 0).all()
    assert stats.details["zero_variance_channels"] == int(np.count_nonzero(stats.var == 0))
