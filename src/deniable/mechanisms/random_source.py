"""Where mechanisms get their randomness: a seeded (reproducible) or a secure source.

``RandomSource(seed)`` is reproducible: the same seed gives the same bits on every machine
(Python's Mersenne Twister for scalar draws, numpy's PCG64 for vectorised draws; both documented
as stable streams). It is for tests, experiments and audits, never for a real release: anyone who
learns the seed can subtract the noise.

``RandomSource.secure()`` takes every bit from the operating system's CSPRNG
(``random.SystemRandom``, i.e. ``os.urandom``), both for scalar and for vectorised draws. Every
mechanism result records which kind produced it (``Release.secure``).

All draws reduce to uniform integers: ``randbelow`` is exact (rejection on raw bits, no modulo
bias, no floating point), which is what the exact samplers of
:mod:`deniable.mechanisms.exact_sampling` need.
"""

from __future__ import annotations

import os
import random

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError, check_count

_TWO_POW_M53 = 2.0**-53


class RandomSource:
    """A source of uniform random bits, seeded (reproducible) or secure (OS CSPRNG).

    Construct with ``RandomSource(seed)`` (an integer >= 0) or ``RandomSource.secure()``.
    The object is stateful: each draw advances it. It is not thread-safe; give each thread its own.
    """

    _random: random.Random
    _numpy: np.random.Generator | None
    _seed: int | None

    def __init__(self, seed: int) -> None:
        seed = check_count("seed", seed, minimum=0)
        self._seed = seed
        self._random = random.Random(seed)
        self._numpy = np.random.Generator(np.random.PCG64(seed))

    @classmethod
    def secure(cls) -> RandomSource:
        """A source that takes every bit from the OS CSPRNG (``os.urandom``); not reproducible."""
        source = cls.__new__(cls)
        source._seed = None
        source._random = random.SystemRandom()
        source._numpy = None
        return source

    @property
    def is_secure(self) -> bool:
        """True when the bits come from the OS CSPRNG."""
        return self._seed is None

    @property
    def seed(self) -> int | None:
        """The seed of a reproducible source; None for a secure one."""
        return self._seed

    def __repr__(self) -> str:
        return "RandomSource.secure()" if self._seed is None else f"RandomSource({self._seed})"

    # ---- scalar draws (exact) ---------------------------------------------------------------

    def randbits(self, k: int) -> int:
        """A uniform integer in [0, 2**k)."""
        k = check_count("k", k, minimum=0)
        return self._random.getrandbits(k) if k > 0 else 0

    def randbelow(self, n: int) -> int:
        """A uniform integer in [0, n), exactly (rejection sampling on raw bits)."""
        if n < 1:
            raise InvalidParameterError("n", n, "an integer >= 1")
        k = n.bit_length()
        getrandbits = self._random.getrandbits
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    def bernoulli(self, numerator: int, denominator: int) -> bool:
        """True with probability exactly numerator/denominator (0 <= numerator <= denominator)."""
        if denominator < 1 or not 0 <= numerator <= denominator:
            raise InvalidParameterError(
                "numerator/denominator", (numerator, denominator), "a probability in [0, 1]"
            )
        return self.randbelow(denominator) < numerator

    def uniform(self) -> float:
        """A uniform float in [0, 1) on the grid of multiples of 2**-53."""
        return self._random.getrandbits(53) * _TWO_POW_M53

    # ---- vectorised draws -------------------------------------------------------------------

    def uint64_array(self, size: int) -> NDArray[np.uint64]:
        """``size`` uniform 64-bit words (numpy's PCG64 when seeded, ``os.urandom`` when secure)."""
        size = check_count("size", size, minimum=0)
        if self._numpy is None:
            return np.frombuffer(os.urandom(8 * size), dtype=np.uint64).copy()
        return self._numpy.bit_generator.random_raw(size).astype(np.uint64, copy=False)

    def uniform_array(self, size: int) -> NDArray[np.float64]:
        """``size`` uniform floats in [0, 1), multiples of 2**-53."""
        words = self.uint64_array(size) >> np.uint64(11)
        return words.astype(np.float64) * _TWO_POW_M53

    def integers_below_array(self, n: int, size: int) -> NDArray[np.int64]:
        """``size`` uniform integers in [0, n), exactly (rejection on 64-bit words)."""
        if n < 1 or n > 2**62:
            raise InvalidParameterError("n", n, "an integer in [1, 2**62]")
        size = check_count("size", size, minimum=0)
        # Accept a word w only when w < limit, a multiple of n: then w % n is exactly uniform.
        limit = np.uint64((2**64 // n) * n - 1)  # largest accepted word
        out = np.empty(size, dtype=np.int64)
        todo = np.arange(size)
        while todo.size:
            words = self.uint64_array(todo.size)
            ok = words <= limit
            out[todo[ok]] = (words[ok] % np.uint64(n)).astype(np.int64)
            todo = todo[~ok]
        return out
