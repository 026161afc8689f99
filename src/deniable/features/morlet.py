"""The Morlet filter bank of the 2-D scattering transform, built in the Fourier domain.

Notation (Bruna & Mallat 2013; the parameters of kymatio's ``Scattering2D``, which Tramèr & Boneh
2021 used): a Gabor filter with scale σ, orientation θ, central frequency ξ and slant s is, in
space,

    G(u) = exp(−uᵀ A u + i ξ v_θ·u) / (2π σ²/s),   A = R_θ diag(1, s²) R_θᵀ / (2σ²),

with v_θ = (cos θ, sin θ) and u = (row, column). Its continuous Fourier transform is a Gaussian
bump of height 1 centred on ξ v_θ:

    Ĝ(ω) = exp(−(σ²/2) (ω − ξ v_θ)ᵀ R_θ diag(1, 1/s²) R_θᵀ (ω − ξ v_θ)).

On an M × N grid the filter is G sampled and periodised; by Poisson summation its DFT at
ω_k = (2π k₁/M, 2π k₂/N) is the sum of the aliases Σ_n Ĝ(ω_k + 2π n), n ∈ Z², which is what
:func:`gabor_fourier` evaluates (|n_i| ≤ 2: the next alias is below exp(−(σ·3π)²/2) < 1e-20 for
σ ≥ 0.8). The Morlet wavelet subtracts a multiple of the envelope so its mean is exactly zero:

    ψ̂ = Ĝ_{ξ} − κ Ĝ_{0},   κ = Ĝ_{ξ}(0) / Ĝ_{0}(0)   (so ψ̂(0) = 0).

Filters, as in kymatio (``filter_bank.py``; the same filters, built there by summing the spatial
Gaussian over ±2 periods and taking an FFT): for scale j < J and orientation index t < L,
ψ_{j,t} has σ = 0.8·2^j, θ = (L/2 − 1 − t)·π/L, ξ = (3π/4)/2^j, s = 4/L; the low-pass φ_J is the
Gabor with σ = 0.8·2^(J−1), ξ = 0. All are real in the Fourier domain (G(−u) = conj G(u)).
(kymatio normalises by 2·3.1415·σ²/s instead of 2πσ²/s, so its filters are 1.00003 times ours.)

A filter used on a signal already subsampled by 2^r (``level`` r) is its DFT restricted to the
frequencies of the M/2^r grid, −M/2^(r+1) ≤ k < M/2^(r+1), laid out on that grid
(:func:`periodize`).

For J = 2, L = 8 on the 36 × 36 grid of a padded 28 × 28 image the Littlewood–Paley sum
(:func:`littlewood_paley`) lies in [0.12, 1]: the first layer is non-expansive and invertible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_count

Array = NDArray[np.float64]

_ALIASES = 2  # periods summed on each side (Poisson summation), see the module docstring


def gabor_fourier(
    shape: tuple[int, int], *, sigma: float, theta: float, xi: float, slant: float = 1.0
) -> Array:
    """DFT of the periodised, sampled Gabor filter on a grid of ``shape`` (real, float64)."""
    m, n = shape
    w1 = 2 * math.pi * np.fft.fftfreq(m)[:, None]
    w2 = 2 * math.pi * np.fft.fftfreq(n)[None, :]
    cos, sin = math.cos(theta), math.sin(theta)
    out = np.zeros((m, n))
    for a in range(-_ALIASES, _ALIASES + 1):
        for b in range(-_ALIASES, _ALIASES + 1):
            d1 = w1 + 2 * math.pi * a - xi * cos
            d2 = w2 + 2 * math.pi * b - xi * sin
            along = cos * d1 + sin * d2  # component along v_θ
            across = -sin * d1 + cos * d2
            out += np.exp(-0.5 * sigma**2 * (along**2 + across**2 / slant**2))
    return out


def morlet_fourier(
    shape: tuple[int, int], *, sigma: float, theta: float, xi: float, slant: float
) -> Array:
    """DFT of the Morlet wavelet: the Gabor minus κ times its envelope, so ψ̂(0) = 0."""
    wave = gabor_fourier(shape, sigma=sigma, theta=theta, xi=xi, slant=slant)
    envelope = gabor_fourier(shape, sigma=sigma, theta=theta, xi=0.0, slant=slant)
    kappa = wave[0, 0] / envelope[0, 0]
    return wave - kappa * envelope


def periodize(filter_hat: Array, level: int) -> Array:
    """The filter for a signal subsampled by 2^level: its frequencies −M_i/2^(level+1) ≤ k_i <
    M_i/2^(level+1) (those of the coarser grid), folded onto the (M/2^level) × (N/2^level) DFT
    grid; the others are dropped rather than aliased."""
    if level == 0:
        return filter_hat.copy()
    k = 2**level
    m, n = filter_hat.shape
    if m % (2 * k) or n % (2 * k):
        raise InvalidParameterError("level", level, f"one that divides the grid {m}x{n} by 2^(l+1)")
    keep_m = _in_band(m, k)
    keep_n = _in_band(n, k)
    masked = filter_hat * keep_m[:, None] * keep_n[None, :]
    return masked.reshape(k, m // k, k, n // k).sum(axis=(0, 2))


def _in_band(size: int, k: int) -> NDArray[np.bool_]:
    freq = np.fft.fftfreq(size) * size
    return (freq >= -size / (2 * k)) & (freq < size / (2 * k))


@dataclass(frozen=True)
class Wavelet:
    """ψ_{j,t}: scale ``j``, orientation index ``t`` (angle ``theta``), its DFT at each level."""

    j: int
    t: int
    theta: float
    levels: tuple[Array, ...]


@dataclass(frozen=True)
class FilterBank:
    """φ_J at levels 0..J−1 and the L·J wavelets (j-major, then t) on an M × N grid."""

    shape: tuple[int, int]
    J: int
    L: int
    phi: tuple[Array, ...]
    psi: tuple[Wavelet, ...]


def morlet_filter_bank(shape: tuple[int, int], J: int, L: int = 8) -> FilterBank:
    """The filters of a J-scale, L-orientation scattering on a padded grid of ``shape``.

    Wavelet ψ_j is stored at the levels 0..min(j, J−2) (the resolutions of the first-order
    signals it is applied to); φ_J at levels 0..J−1.
    """
    check_count("J", J)
    check_count("L", L)
    m, n = shape
    if m % 2**J or n % 2**J:
        raise InvalidParameterError("shape", shape, f"multiples of 2^J = {2**J}")
    psi = []
    for j in range(J):
        for t in range(L):
            theta = (L // 2 - 1 - t) * math.pi / L
            full = morlet_fourier(
                shape, sigma=0.8 * 2**j, theta=theta, xi=0.75 * math.pi / 2**j, slant=4.0 / L
            )
            levels = tuple(periodize(full, r) for r in range(min(j + 1, max(J - 1, 1))))
            psi.append(Wavelet(j, t, theta, levels))
    phi_full = gabor_fourier(shape, sigma=0.8 * 2 ** (J - 1), theta=0.0, xi=0.0)
    phi = tuple(periodize(phi_full, r) for r in range(J))
    return FilterBank((m, n), J, L, phi, tuple(psi))


def littlewood_paley(bank: FilterBank) -> Array:
    """A(ω) = |φ̂(ω)|² + Σ_{j,t} (|ψ̂_{j,t}(ω)|² + |ψ̂_{j,t}(−ω)|²)/2 on the full grid.

    For a real signal x, ‖x ⋆ φ‖² + Σ ‖x ⋆ ψ_{j,t}‖² = (1/MN) Σ_ω |x̂(ω)|² A(ω), so the
    first layer's energy lies between min A and max A times ‖x‖² (Mallat 2012, §2.2).
    """
    total = bank.phi[0] ** 2
    for wavelet in bank.psi:
        full = wavelet.levels[0]
        mirrored = np.roll(full[::-1, ::-1], shift=(1, 1), axis=(0, 1))  # ψ̂(−ω)
        total = total + 0.5 * (full**2 + mirrored**2)
    return total
