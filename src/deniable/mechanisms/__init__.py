"""Mechanisms: each returns a :class:`Release` holding its output and the privacy event of
exactly what it did, so the claim and the code cannot drift.

- :func:`laplace`, :func:`gaussian`, :func:`analytic_gaussian`, :func:`classic_gaussian`:
  real values, safe against floating-point attacks (Mironov 2012) via a power-of-two grid and
  exact discrete noise (:mod:`~deniable.mechanisms.grid`); :func:`laplace_unsafe_float` and
  :func:`gaussian_unsafe_float` are the vectorised floating-point versions for large vectors.
- :func:`discrete_laplace`, :func:`discrete_gaussian`: integer queries, exact
  (Canonne, Kamath & Steinke 2020).
- :func:`randomized_response` (k-ary, vectorised), :func:`exponential` (exact sampling).
- :mod:`~deniable.mechanisms.statistics`: private count, sum, mean and test accuracy.
- :class:`RandomSource`: seeded (reproducible) or :meth:`RandomSource.secure` (OS CSPRNG);
  every mechanism defaults to a fresh secure source and records which was used.

Example (seeded, so reproducible; real releases use the default secure source):

>>> from deniable.mechanisms import RandomSource, laplace
>>> release = laplace(3.2, epsilon=1.0, sensitivity=1.0, rng=RandomSource(0))
>>> release.event
DiscreteLaplaceEvent(scale=1024.0, sensitivity=1025.0, replace_one_sensitivity=None, dimension=1)
>>> round(release.details["epsilon_effective"], 4), release.secure
(1.001, False)
"""

from __future__ import annotations

from deniable.mechanisms.calibration import analytic_sigma, classic_sigma, laplace_scale
from deniable.mechanisms.discrete import discrete_gaussian, discrete_laplace
from deniable.mechanisms.exact_sampling import (
    bernoulli_exp,
    discrete_gaussian_sample,
    discrete_laplace_sample,
)
from deniable.mechanisms.exponential import exponential, selection_probabilities
from deniable.mechanisms.gaussian import (
    analytic_gaussian,
    classic_gaussian,
    gaussian,
    gaussian_unsafe_float,
)
from deniable.mechanisms.grid import GRID_BITS, Grid
from deniable.mechanisms.laplace import laplace, laplace_unsafe_float
from deniable.mechanisms.random_source import RandomSource
from deniable.mechanisms.randomized_response import keep_probability, randomized_response
from deniable.mechanisms.release import Release
from deniable.mechanisms.statistics import (
    private_accuracy,
    private_count,
    private_mean,
    private_mean_public_count,
    private_sum,
)

__all__ = [
    "GRID_BITS",
    "Grid",
    "RandomSource",
    "Release",
    "analytic_gaussian",
    "analytic_sigma",
    "bernoulli_exp",
    "classic_gaussian",
    "classic_sigma",
    "discrete_gaussian",
    "discrete_gaussian_sample",
    "discrete_laplace",
    "discrete_laplace_sample",
    "exponential",
    "gaussian",
    "gaussian_unsafe_float",
    "keep_probability",
    "laplace",
    "laplace_scale",
    "laplace_unsafe_float",
    "private_accuracy",
    "private_count",
    "private_mean",
    "private_mean_public_count",
    "private_sum",
    "randomized_response",
    "selection_probabilities",
]
