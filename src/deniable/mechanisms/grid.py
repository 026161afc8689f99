"""The power-of-two grid that makes noise on floats safe (Mironov 2012).

Textbook Laplace noise computed in floating point leaks the input through the low-order bits of
the output (Mironov 2012, "On significance of the least significant bits for differential
privacy"). The safe path used by :func:`~deniable.mechanisms.laplace` and
:func:`~deniable.mechanisms.gaussian` is:

1. choose a grid width g = 2^k: the largest power of two <= min(scale, sensitivity)/2^10
   (``GRID_BITS`` = 10), so the grid is at least 1024 times finer than both the noise and the
   sensitivity;
2. round the query value x to the grid exactly: n = ⌊x/g + 1/2⌋, computed with rationals;
3. add exact integer noise Z (discrete Laplace or discrete Gaussian, in grid units) and release
   (n + Z)·g. The release is a function of the integer n + Z only (post-processing), so
   nothing about x beyond n can leak.

Rounding can make neighbouring inputs differ by one more grid unit than their difference: if
|x − x'| <= Δ then |n − n'| <= ⌈Δ/g⌉ <= ⌊Δ/g⌋ + 1. The events therefore state the sensitivity in
grid units as ⌊Δ/g⌋ + 1 for a scalar (the extra unit when Δ/g is an integer also absorbs the last
bit of floating-point error in computing x), ⌊Δ/g⌋ + d for the L1 norm of d coordinates and
Δ/g + √d for the L2 norm. The ε an accountant computes from the event is therefore slightly
above the nominal ε, by a factor of at most 1 + d·g/Δ <= 1 + d/1024; mechanisms report both
(``details["epsilon"]`` and ``details["epsilon_effective"]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from deniable.errors import InvalidParameterError, check_positive

GRID_BITS = 10


@dataclass(frozen=True)
class Grid:
    """The grid of multiples of 2^``exponent``."""

    exponent: int

    @classmethod
    def for_noise(cls, *, scale: float, sensitivity: float) -> Grid:
        """The largest power of two <= min(scale, sensitivity)/2^GRID_BITS."""
        smallest = min(check_positive("scale", scale), check_positive("sensitivity", sensitivity))
        _, e = math.frexp(smallest)  # smallest = m·2^e with m in [0.5, 1)
        return cls(exponent=e - 1 - GRID_BITS)

    @property
    def width(self) -> float:
        """g = 2^exponent."""
        return math.ldexp(1.0, self.exponent)

    @property
    def _width_fraction(self) -> Fraction:
        k = self.exponent
        return Fraction(2**k) if k >= 0 else Fraction(1, 2**-k)

    def units(self, x: float) -> Fraction:
        """x/g, exactly."""
        return Fraction(x) / self._width_fraction

    def snap(self, values: Iterable[float]) -> list[int]:
        """Each value rounded to the nearest grid point (halves up), in grid units, exactly."""
        half = Fraction(1, 2)
        return [math.floor(self.units(float(x)) + half) for x in values]

    def to_float(self, n: int) -> float:
        """n·g as the nearest float (post-processing of the integer n)."""
        return float(Fraction(n) * self._width_fraction)

    def l1_sensitivity(self, sensitivity: float, dimension: int) -> int:
        """An integer bound on ‖n − n'‖₁ in grid units when ‖x − x'‖₁ <= ``sensitivity``."""
        return math.floor(self.units(sensitivity)) + dimension

    def l2_sensitivity(self, sensitivity: float, dimension: int) -> float:
        """A bound on ‖n − n'‖₂ in grid units when ‖x − x'‖₂ <= ``sensitivity``."""
        if dimension == 1:
            return float(math.floor(self.units(sensitivity)) + 1)
        bound = float(self.units(sensitivity)) + math.sqrt(dimension)
        return math.nextafter(bound, math.inf)  # round up past the float errors above


def grid_scale(grid: Grid, name: str, scale: float) -> float:
    """``scale`` in grid units as a float, refusing a result that is not exactly representable."""
    units = grid.units(scale)
    try:
        as_float = float(units)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float) or Fraction(as_float) != units:
        raise InvalidParameterError(name, scale, "a number whose grid-unit value is a float")
    return as_float
