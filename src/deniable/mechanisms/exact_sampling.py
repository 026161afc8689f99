"""Exact samplers for Bernoulli(exp(−γ)), the discrete Laplace and the discrete Gaussian.

Canonne, Kamath & Steinke (2020), "The Discrete Gaussian for Differential Privacy" (NeurIPS),
Algorithms 1–3. Only integer and rational arithmetic is used (:class:`fractions.Fraction`
parameters, uniform integers from :meth:`RandomSource.randbelow`), so each sample has exactly
the stated distribution given perfect uniform bits: no floating-point rounding can leak the
input, which is the attack of Mironov (2012) on textbook floating-point Laplace noise.

Expected running time is O(1) draws per sample for every parameter (each rejection loop accepts
with probability bounded away from 0), with integers whose size grows like the bit length of the
parameters. The running time depends on the sample drawn, so it is a timing side channel
(CKS 2020 discuss it): do not publish timings of individual draws.
"""

from __future__ import annotations

import math
from fractions import Fraction

from deniable.errors import InvalidParameterError
from deniable.mechanisms.random_source import RandomSource

Rational = Fraction | int


def _as_fraction(name: str, value: Rational, *, positive: bool) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Fraction | int):
        raise InvalidParameterError(name, value, "a fractions.Fraction or an int")
    frac = Fraction(value)
    if frac < 0 or (positive and frac == 0):
        raise InvalidParameterError(name, value, "> 0" if positive else ">= 0")
    return frac


def _bernoulli_exp_unit(num: int, den: int, rng: RandomSource) -> bool:
    """Bernoulli(exp(−num/den)) for 0 <= num/den <= 1 (CKS 2020, Alg. 1, first case).

    Draw A_k ~ Bernoulli(γ/k) for k = 1, 2, ... until one is 0; the index K of that draw is odd
    with probability exactly exp(−γ).
    """
    k = 1
    while rng.randbelow(den * k) < num:
        k += 1
    return k % 2 == 1


def _bernoulli_exp(num: int, den: int, rng: RandomSource) -> bool:
    """Bernoulli(exp(−num/den)) for any num/den >= 0 (CKS 2020, Alg. 1)."""
    whole = num // den
    for _ in range(whole):  # exp(−γ) = exp(−1)^⌊γ⌋ · exp(−(γ − ⌊γ⌋)); stops early w.p. 1 − 1/e
        if not _bernoulli_exp_unit(1, 1, rng):
            return False
    return _bernoulli_exp_unit(num - whole * den, den, rng)


def bernoulli_exp(gamma: Rational, rng: RandomSource) -> bool:
    """True with probability exactly exp(−gamma), for a rational ``gamma`` >= 0.

    Canonne, Kamath & Steinke (2020), Algorithm 1.
    """
    g = _as_fraction("gamma", gamma, positive=False)
    return _bernoulli_exp(g.numerator, g.denominator, rng)


def _geometric(t: int, s: int, rng: RandomSource) -> int:
    """Y >= 0 with P(Y = y) ∝ exp(−y·s/t) (the magnitude in CKS 2020, Alg. 2)."""
    while True:
        u = rng.randbelow(t)
        if _bernoulli_exp(u, t, rng):  # U | accept has P(u) ∝ exp(−u/t) on {0, ..., t−1}
            break
    v = 0
    while _bernoulli_exp_unit(1, 1, rng):  # V ~ Geometric(1 − 1/e)
        v += 1
    return (u + t * v) // s


def _discrete_laplace(t: int, s: int, rng: RandomSource) -> int:
    while True:
        negative = rng.randbits(1) == 1
        magnitude = _geometric(t, s, rng)
        if negative and magnitude == 0:
            continue  # otherwise 0 would be counted twice
        return -magnitude if negative else magnitude


def discrete_laplace_sample(scale: Rational, rng: RandomSource) -> int:
    """An integer X with P(X = x) = (e^{1/scale} − 1)/(e^{1/scale} + 1) · exp(−|x|/scale).

    Canonne, Kamath & Steinke (2020), Algorithm 2; ``scale`` = t/s is a positive rational.
    """
    frac = _as_fraction("scale", scale, positive=True)
    return _discrete_laplace(frac.numerator, frac.denominator, rng)


def discrete_gaussian_sample(sigma: Rational, rng: RandomSource) -> int:
    """An integer X with P(X = x) ∝ exp(−x²/(2σ²)) (the discrete Gaussian N_Z(0, σ²)).

    Canonne, Kamath & Steinke (2020), Algorithm 3: propose Y from the discrete Laplace with
    scale t = ⌊σ⌋ + 1 and accept with probability exp(−(|Y| − σ²/t)²/(2σ²)).
    """
    frac = _as_fraction("sigma", sigma, positive=True)
    variance = frac * frac
    p, q = variance.numerator, variance.denominator  # σ² = p/q
    t = math.floor(frac) + 1
    while True:
        y = _discrete_laplace(t, 1, rng)
        # (|y| − σ²/t)² / (2σ²) = (|y|·q·t − p)² / (2·p·q·t²), exactly.
        if _bernoulli_exp((abs(y) * q * t - p) ** 2, 2 * p * q * t * t, rng):
            return y
