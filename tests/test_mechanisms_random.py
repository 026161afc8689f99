"""RandomSource: secure mode draws from the OS CSPRNG, seeded mode reproduces exactly, and every
mechanism records which it used."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from deniable.errors import DeniableError
from deniable.mechanisms import (
    RandomSource,
    Release,
    analytic_gaussian,
    discrete_gaussian,
    discrete_laplace,
    exponential,
    gaussian_unsafe_float,
    laplace,
    laplace_unsafe_float,
    private_accuracy,
    private_count,
    private_mean,
    private_sum,
    randomized_response,
)

VALUES = np.linspace(0.0, 1.0, 16)

MECHANISMS: dict[str, Callable[[RandomSource | None], Release[object]]] = {
    "laplace": lambda r: laplace(VALUES, epsilon=1.0, sensitivity=1.0, rng=r),
    "analytic_gaussian": lambda r: analytic_gaussian(
        VALUES, epsilon=1.0, delta=1e-5, sensitivity=1.0, rng=r
    ),
    "laplace_unsafe_float": lambda r: laplace_unsafe_float(
        VALUES, epsilon=1.0, sensitivity=1.0, rng=r
    ),
    "gaussian_unsafe_float": lambda r: gaussian_unsafe_float(
        VALUES, sigma=1.0, sensitivity=1.0, rng=r
    ),
    "discrete_laplace": lambda r: discrete_laplace(np.arange(16), epsilon=0.1, rng=r),
    "discrete_gaussian": lambda r: discrete_gaussian(np.arange(16), sigma=30.0, rng=r),
    "randomized_response": lambda r: randomized_response(
        np.arange(64) % 8, epsilon=0.5, num_buckets=8, rng=r
    ),
    "exponential": lambda r: exponential(np.zeros(1000), epsilon=1.0, sensitivity=1.0, rng=r),
    "private_count": lambda r: private_count(range(100), epsilon=0.01, rng=r),
    "private_sum": lambda r: private_sum(VALUES, lo=0.0, hi=1.0, epsilon=1.0, rng=r),
    "private_mean": lambda r: private_mean(VALUES, lo=0.0, hi=1.0, epsilon=1.0, rng=r),
    "private_accuracy": lambda r: private_accuracy([1] * 10, [1] * 10, epsilon=0.01, rng=r),
}


def _same(a: object, b: object) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_seeded_sources_reproduce_exactly(name: str) -> None:
    run = MECHANISMS[name]
    first, second = run(RandomSource(123)), run(RandomSource(123))
    assert _same(first.value, second.value)
    assert first.event == second.event and first.details == second.details
    assert first.secure is False
    assert first.mechanism == name


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_secure_sources_differ_and_say_so(name: str) -> None:
    run = MECHANISMS[name]
    first, second = RandomSource.secure(), RandomSource.secure()
    a = [run(first) for _ in range(5)]
    b = [run(second) for _ in range(5)]
    assert all(r.secure for r in a + b)
    # Each output has >= 9 bits of entropy, so five of them collide with probability < 1e-13.
    assert not all(_same(x.value, y.value) for x, y in zip(a, b, strict=True))
    default = run(None)  # no rng: a fresh secure source is the default
    assert default.secure is True


def test_different_seeds_differ() -> None:
    a = laplace(VALUES, epsilon=1.0, sensitivity=1.0, rng=RandomSource(1))
    b = laplace(VALUES, epsilon=1.0, sensitivity=1.0, rng=RandomSource(2))
    assert not _same(a.value, b.value)


def test_source_properties() -> None:
    seeded, secure = RandomSource(5), RandomSource.secure()
    assert not seeded.is_secure and seeded.seed == 5 and repr(seeded) == "RandomSource(5)"
    assert secure.is_secure and secure.seed is None and repr(secure) == "RandomSource.secure()"
    assert secure.randbits(128) != secure.randbits(128)
    assert RandomSource(5).randbits(64) == RandomSource(5).randbits(64)


@pytest.mark.parametrize("make", [lambda: RandomSource(3), RandomSource.secure])
def test_uniform_draws(make: Callable[[], RandomSource]) -> None:
    """randbelow and integers_below_array are uniform (chi-square, rate 1e-3 each); uniform
    floats lie in [0, 1) (KS, rate 1e-3)."""
    src = make()
    scalar = np.bincount([src.randbelow(7) for _ in range(14_000)], minlength=7)
    assert stats.chisquare(scalar).pvalue > 1e-3
    vector = np.bincount(src.integers_below_array(7, 70_000), minlength=7)
    assert stats.chisquare(vector).pvalue > 1e-3
    u = src.uniform_array(10_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert 0.0 <= src.uniform() < 1.0
    assert src.bernoulli(0, 5) is False and src.bernoulli(5, 5) is True


@pytest.mark.parametrize(
    "call",
    [
        lambda: RandomSource(-1),
        lambda: RandomSource(1.5),  # type: ignore[arg-type]
        lambda: RandomSource(1).randbelow(0),
        lambda: RandomSource(1).bernoulli(3, 2),
        lambda: RandomSource(1).integers_below_array(0, 3),
    ],
)
def test_source_bad_inputs(call: Callable[[], object]) -> None:
    with pytest.raises(DeniableError):
        call()


def test_release_to_dict_is_json_ready() -> None:
    import json

    rel = laplace(np.zeros(3), epsilon=1.0, sensitivity=1.0, rng=RandomSource(0))
    data = rel.to_dict()
    assert data["mechanism"] == "laplace" and data["secure"] is False
    assert isinstance(data["event"], dict) and data["event"]["type"] == "DiscreteLaplaceEvent"
    json.dumps(data)


def test_package_docstring_example_runs() -> None:
    import doctest

    import deniable.mechanisms

    result = doctest.testmod(deniable.mechanisms, verbose=False)
    assert result.attempted >= 3 and result.failed == 0
