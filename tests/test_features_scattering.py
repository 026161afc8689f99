"""The scattering transform: shapes, filter-bank properties, invariances, and kymatio as oracle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deniable.features.morlet import (
    gabor_fourier,
    littlewood_paley,
    morlet_filter_bank,
    periodize,
)
from deniable.features.scattering import Scattering2D, num_channels, padded_size

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def scattering() -> Scattering2D:
    return Scattering2D((28, 28), J=2, L=8)


@pytest.fixture(scope="module")
def bank():  # the filters on the padded 36 × 36 grid of a 28 × 28 image
    return morlet_filter_bank((36, 36), 2, 8)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    """MNIST digits when available, else smooth random blobs in [0, 1]."""
    if (MNIST / "train-images-idx3-ubyte.gz").exists() or (
        MNIST / "train-images-idx3-ubyte"
    ).exists():
        from deniable.data import load_mnist

        return torch.as_tensor(load_mnist(MNIST).test.features[:n])
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, 28, 28, generator=gen)
    return torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)


def test_channel_count_and_output_shape(scattering: Scattering2D) -> None:
    assert num_channels(2, 8) == 1 + 2 * 8 + 8 * 8 * 2 * 1 // 2 == 81
    assert padded_size(28, 2) == 36
    out = scattering(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 81, 7, 7)
    assert scattering.output_shape == (81, 7, 7)
    colour = Scattering2D((32, 32), J=3, L=8)(torch.rand(2, 3, 32, 32))
    assert colour.shape == (2, 3 * num_channels(3, 8), 4, 4)


def test_wrong_input_shape_is_refused(scattering: Scattering2D) -> None:
    with pytest.raises(ValueError, match="x"):
        scattering(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        Scattering2D((4, 4), J=2)  # reflect padding needs more pixels than it adds


def test_closed_form_filters_equal_the_fft_of_the_spatial_gabor() -> None:
    """Poisson summation: our Fourier-domain Gabor is the DFT of the sampled, periodised
    spatial filter (computed here directly, by brute force over ±3 periods)."""
    m = n = 36
    sigma, theta, xi, slant = 0.8, 3 * math.pi / 8, 0.75 * math.pi, 0.5
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    curv = rot @ np.diag([1.0, slant**2]) @ rot.T / (2 * sigma**2)
    spatial = np.zeros((m, n), dtype=complex)
    for a in range(-3, 4):
        for b in range(-3, 4):
            u, v = np.mgrid[a * m : (a + 1) * m, b * n : (b + 1) * n].astype(float)
            quad = curv[0, 0] * u * u + 2 * curv[0, 1] * u * v + curv[1, 1] * v * v
            spatial += np.exp(-quad + 1j * xi * (u * math.cos(theta) + v * math.sin(theta)))
    spatial /= 2 * math.pi * sigma**2 / slant
    direct = np.fft.fft2(spatial)
    ours = gabor_fourier((m, n), sigma=sigma, theta=theta, xi=xi, slant=slant)
    assert np.abs(direct.imag).max() < 1e-10  # real in Fourier: G(−u) = conj G(u)
    np.testing.assert_allclose(ours, direct.real, atol=1e-10)


def test_wavelets_have_zero_mean_and_peak_at_their_frequency(bank) -> None:
    step = 2 * math.pi / 36  # one DFT bin
    freqs = 2 * math.pi * np.fft.fftfreq(36)
    assert len(bank.psi) == 16
    for wavelet in bank.psi:
        psi_hat = wavelet.levels[0]
        assert abs(psi_hat[0, 0]) < 1e-12  # ∫ψ = 0
        i, j = np.unravel_index(np.argmax(psi_hat), psi_hat.shape)
        xi = 0.75 * math.pi / 2**wavelet.j
        expected = xi * np.array([math.cos(wavelet.theta), math.sin(wavelet.theta)])
        assert np.hypot(freqs[i] - expected[0], freqs[j] - expected[1]) <= step
        assert 0.9 < psi_hat.max() <= 1.0
    assert [w.theta for w in bank.psi[:8]] == pytest.approx(
        [(3 - t) * math.pi / 8 for t in range(8)]
    )


def test_lowpass_preserves_the_mean(bank) -> None:
    phi = bank.phi[0]
    assert phi[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert phi.min() >= 0.0 and phi.max() == pytest.approx(1.0)


def test_littlewood_paley_sum_is_bounded(bank) -> None:
    """0 < a ≤ A(ω) ≤ 1: the first layer (φ and all ψ) is a non-expansive, invertible frame."""
    lp = littlewood_paley(bank)
    assert lp.max() <= 1.0 + 1e-9
    assert lp.min() > 0.1


def test_first_layer_energy_obeys_littlewood_paley(bank) -> None:
    """‖x⋆φ‖² + Σ‖x⋆ψ‖² = (1/MN) Σ|x̂|² A(ω) for a real x, so it lies in [min A, max A]·‖x‖²."""
    x = np.random.default_rng(0).normal(size=(36, 36))
    x_hat = np.fft.fft2(x)
    energy = np.sum(np.abs(np.fft.ifft2(x_hat * bank.phi[0])) ** 2)
    for wavelet in bank.psi:
        energy += np.sum(np.abs(np.fft.ifft2(x_hat * wavelet.levels[0])) ** 2)
    lp = littlewood_paley(bank)
    assert energy == pytest.approx(np.sum(np.abs(x_hat) ** 2 * lp) / x.size, rel=1e-10)
    assert lp.min() * np.sum(x**2) <= energy <= lp.max() * np.sum(x**2)


def test_periodized_filter_keeps_the_coarse_grid_band(bank) -> None:
    full = bank.phi[0]
    half = periodize(full, 1)
    assert half.shape == (18, 18)
    np.testing.assert_allclose(half, bank.phi[1])
    np.testing.assert_allclose(half[:9, :9], full[:9, :9])  # frequencies 0..8 are kept as is
    np.testing.assert_allclose(half[9:, 9:], full[27:, 27:])  # and −9..−1


def test_constant_image_has_only_a_lowpass_coefficient(scattering: Scattering2D) -> None:
    out = scattering(torch.full((2, 1, 28, 28), 0.7))
    torch.testing.assert_close(out[:, 0], torch.full((2, 7, 7), 0.7), atol=1e-5, rtol=0)
    assert out[:, 1:].abs().max() < 1e-5


def test_positive_homogeneity_and_zero(scattering: Scattering2D) -> None:
    x = _images(4)
    torch.testing.assert_close(scattering(3.0 * x), 3.0 * scattering(x), atol=1e-5, rtol=1e-5)
    assert scattering(torch.zeros(1, 1, 28, 28)).abs().max() == 0


def test_translation_by_2_to_the_J_shifts_the_output_by_one(scattering: Scattering2D) -> None:
    """An image supported away from the border, moved by 2^J = 4 pixels, gives exactly the
    same coefficients moved by one position of the 7 × 7 grid (covariance). The support stays
    5 pixels from the border, so the reflect padding adds only zeros before and after."""
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 6:18, 6:18] = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    down = torch.roll(x, 4, dims=2)
    right = torch.roll(x, 4, dims=3)
    s, s_down, s_right = scattering(x), scattering(down), scattering(right)
    torch.testing.assert_close(s_down[..., 1:, :], s[..., :-1, :], atol=1e-5, rtol=0)
    torch.testing.assert_close(s_right[..., :, 1:], s[..., :, :-1], atol=1e-5, rtol=0)


def test_small_translations_change_the_features_much_less_than_the_pixels(
    scattering: Scattering2D,
) -> None:
    """Below 2^J the low-pass averaging makes the features nearly invariant: a 1-pixel shift
    moves an MNIST digit by ~57 % of its norm but its scattering by ~21 %."""
    x = _images(32)
    s = scattering(x)
    for shift in (1, 2):
        moved = torch.roll(x, shift, dims=2)
        pixel_change = float((moved - x).norm() / x.norm())
        feature_change = float((scattering(moved) - s).norm() / s.norm())
        assert feature_change < 0.5 * pixel_change


def _kymatio_2d():  # the torch front end only: kymatio.torch also imports its 3-D part
    module = pytest.importorskip("kymatio.scattering2d.frontend.torch_frontend")
    return module.ScatteringTorch2D


@pytest.mark.parametrize(("shape", "J", "channels"), [((28, 28), 2, 1), ((32, 32), 3, 3)])
def test_matches_kymatio(shape: tuple[int, int], J: int, channels: int) -> None:
    """kymatio (test-only oracle; its filters are 1.00003× ours, see deniable.features.morlet)."""
    oracle = _kymatio_2d()(J=J, shape=shape, L=8)
    x = _images(6) if shape == (28, 28) else torch.rand(3, channels, *shape)
    ours = Scattering2D(shape, J=J, L=8)(x)
    theirs = oracle(x).reshape(ours.shape)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=2e-4)


def test_docstring_examples_run() -> None:
    import doctest

    import deniable.features
    import deniable.features.scattering

    for module in (deniable.features, deniable.features.scattering):
        assert doctest.testmod(module).failed == 0
