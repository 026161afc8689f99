"""Disjoint teacher partitions keyed by privacy unit (Papernot et al. 2017, §2.1).

PATE's analysis needs one privacy unit to reach exactly one teacher. The teacher of an example is
therefore a seeded hash of its unit key (the example's position when there are no keys, or its
user id): adding or removing a unit changes only the partition that unit hashes to, and every
example of a user lands with the same teacher. A random permutation cut into equal chunks would be
better balanced, but adding one unit would shift every later unit to another teacher.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_count

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix."""
    z = x.copy()
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def teacher_assignment(
    unit_keys: NDArray[np.int64], num_teachers: int, *, seed: int = 0
) -> NDArray[np.int64]:
    """The teacher index (0 … ``num_teachers`` − 1) of each example, a function of its unit key
    and ``seed`` only. Partitions are disjoint; sizes are balanced in expectation."""
    t = check_count("num_teachers", num_teachers, minimum=2)
    s = check_count("seed", seed, minimum=0)
    keys = np.asarray(unit_keys)
    if keys.ndim != 1 or keys.dtype.kind not in "iu":
        raise InvalidParameterError("unit_keys", keys.shape, "a 1-d array of integer unit ids")
    salt = _splitmix64(np.array([s], dtype=np.uint64) * _GOLDEN + _GOLDEN)[0]
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys.astype(np.int64).view(np.uint64) ^ salt)
    return (mixed % np.uint64(t)).astype(np.int64)
