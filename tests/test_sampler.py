"""Samplers: the realised batches follow the distribution the accountant assumes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deniable.errors import DeniableError, InvalidParameterError
from deniable.events import GaussianEvent, Neighbouring, SampledWithoutReplacementEvent
from deniable.train.noise import NoiseSource
from deniable.train.sampler import FixedSizeSampler, PoissonSampler, UnitIndex


def test_poisson_batch_sizes_are_binomial() -> None:
    # Chi-square of 4000 batch sizes against Binomial(500, 0.02); false-failure rate 1e-3.
    n, q, draws = 500, 0.02, 4000
    sampler = PoissonSampler(n, q, seed=7)
    sizes = np.array([sampler.sample().size for _ in range(draws)])
    assert (sizes == 0).any() or stats.binom.pmf(0, n, q) * draws < 1
    edges = np.arange(0, 22)
    observed = np.array([(sizes == k).sum() for k in edges[:-1]] + [(sizes >= 21).sum()])
    expected = (
        np.array([stats.binom.pmf(k, n, q) for k in edges[:-1]] + [stats.binom.sf(20, n, q)])
        * draws
    )
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_poisson_membership_is_independent_with_rate_q() -> None:
    # Each unit's inclusion frequency over 3000 draws is within 4.5 standard errors of q
    # (union bound over 200 units: false-failure rate < 1e-3).
    n, q, draws = 200, 0.1, 3000
    sampler = PoissonSampler(n, q, seed=3)
    counts = np.zeros(n)
    for _ in range(draws):
        counts[sampler.sample()] += 1
    se = np.sqrt(q * (1 - q) / draws)
    assert np.all(np.abs(counts / draws - q) < 4.5 * se)


def test_fixed_size_sampler_draws_uniform_subsets() -> None:
    sampler = FixedSizeSampler(50, 5, seed=1)
    counts = np.zeros(50)
    for _ in range(4000):
        batch = sampler.sample()
        assert batch.size == 5 and np.unique(batch).size == 5
        counts[batch] += 1
    assert stats.chisquare(counts).pvalue > 1e-3
    assert isinstance(sampler.event(GaussianEvent(1.0)), SampledWithoutReplacementEvent)
    assert sampler.relation is Neighbouring.REPLACE_ONE


def test_sampler_state_round_trip_reproduces_batches() -> None:
    a = PoissonSampler(100, 0.1, seed=5)
    a.sample()
    state = a.state_dict()
    expected = [a.sample() for _ in range(3)]
    b = PoissonSampler(100, 0.1, seed=999)
    b.load_state_dict(state)
    for want in expected:
        np.testing.assert_array_equal(b.sample(), want)


def test_unit_index_groups_examples_by_key() -> None:
    keys = np.array([10, 3, 10, 7, 3, 3])
    index = UnitIndex.from_keys(keys, 6)
    assert index.num_units == 3
    np.testing.assert_array_equal(index.keys, [3, 7, 10])
    np.testing.assert_array_equal(index.examples_of(np.array([0])), [1, 4, 5])  # key 3
    np.testing.assert_array_equal(index.examples_of(np.array([2, 1])), [0, 2, 3])
    with pytest.raises(DeniableError):
        UnitIndex.from_keys(np.array([1, 2]), 3)


def test_bad_sampler_parameters() -> None:
    with pytest.raises(InvalidParameterError):
        PoissonSampler(10, 1.5, seed=0)
    with pytest.raises(InvalidParameterError):
        FixedSizeSampler(10, 11, seed=0)


def test_noise_source_seeded_and_secure() -> None:
    import torch

    a, b = NoiseSource(4), NoiseSource(4)
    x = torch.zeros(1000)
    assert torch.equal(a.gaussian_like(x, 2.0), b.gaussian_like(x, 2.0))
    secure = NoiseSource()
    assert secure.secure and "generator" not in secure.state_dict()
    # KS test of the noise against N(0, 2²) at a fixed seed: false-failure rate 1e-3.
    sample = NoiseSource(11).gaussian_like(torch.zeros(20000), 2.0).numpy()
    assert stats.kstest(sample, stats.norm(scale=2.0).cdf).pvalue > 1e-3
