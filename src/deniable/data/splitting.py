"""Seeded train/test splits: stratified by label, or by privacy unit when examples share keys.

Deterministic for a given seed (numpy's PCG64), independent of scikit-learn's version. The split is
a public, data-independent choice only in the sense that it uses labels for stratification; it is
made before training and is not covered by the training run's privacy accounting.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from deniable.data.errors import DataError

Indices = NDArray[np.int64]


def stratified_split(
    labels: NDArray[np.int64], test_fraction: float, seed: int
) -> tuple[Indices, Indices]:
    """Sorted ``(train, test)`` positions with ``round(test_fraction * n)`` test examples.

    Each class contributes in proportion to its size (largest-remainder rounding, so the total is
    exact), and both parts are non-empty.
    """
    n = labels.shape[0]
    n_test = _test_count(n, test_fraction)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _largest_remainder(counts.astype(np.float64) * test_fraction, n_test)
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls, quota in zip(classes, quotas, strict=True):
        members = np.flatnonzero(labels == cls)
        test_parts.append(rng.permutation(members)[:quota])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    train = np.setdiff1d(np.arange(n, dtype=np.int64), test, assume_unique=True)
    return train, test


def unit_split(keys: NDArray[np.int64], test_fraction: float, seed: int) -> tuple[Indices, Indices]:
    """Sorted ``(train, test)`` positions such that all examples of one key fall on one side.

    ``round(test_fraction * units)`` randomly chosen units go to test, so a user (privacy unit)
    is never split between training and evaluation.
    """
    units = np.unique(keys)
    n_test = _test_count(units.shape[0], test_fraction, what="privacy units")
    test_units = np.random.default_rng(seed).permutation(units)[:n_test]
    in_test = np.isin(keys, test_units)
    return np.flatnonzero(~in_test).astype(np.int64), np.flatnonzero(in_test).astype(np.int64)


def _test_count(n: int, test_fraction: float, what: str = "examples") -> int:
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in the open interval (0, 1), got {test_fraction}")
    n_test = round(test_fraction * n)
    if n_test < 1 or n_test > n - 1:
        raise DataError(
            f"cannot split {n} {what} with test_fraction={test_fraction}: "
            "both train and test need at least one"
        )
    return n_test


def _largest_remainder(shares: NDArray[np.float64], total: int) -> NDArray[np.int64]:
    """Integers summing to ``total``, each the floor of its share plus at most one."""
    base = np.floor(shares).astype(np.int64)
    remainder = total - int(base.sum())
    order = np.argsort(-(shares - base), kind="stable")
    base[order[:remainder]] += 1
    return base
