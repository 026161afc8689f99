"""Checking and shaping the query values mechanisms receive (internal)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deniable.errors import InvalidParameterError
from deniable.mechanisms.random_source import RandomSource

FloatValues = Sequence[float] | NDArray[Any]
IntValues = Sequence[int] | NDArray[Any]


def source(rng: RandomSource | None) -> RandomSource:
    """The caller's source, or a fresh secure one when None (the safe default)."""
    if rng is None:
        return RandomSource.secure()
    if not isinstance(rng, RandomSource):
        raise InvalidParameterError("rng", rng, "a RandomSource or None")
    return rng


def is_scalar(value: object) -> bool:
    """True for Python/numpy scalars (numbers); False for sequences and arrays (even 0-d)."""
    return isinstance(value, numbers.Number | np.generic) and not isinstance(value, np.ndarray)


def float_values(name: str, value: object, *, allow_empty: bool = False) -> NDArray[np.float64]:
    """``value`` as a float64 array (0-d for a scalar), refusing non-numbers, NaN and inf."""
    if isinstance(value, bool | np.bool_ | str | bytes):
        raise InvalidParameterError(name, value, "a finite number or an array of them")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterError(
            name, type(value).__name__, "a finite number or an array of them"
        ) from None
    if arr.dtype.kind == "b":
        raise InvalidParameterError(name, "booleans", "numbers")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise InvalidParameterError(
            name, f"{bad} non-finite entries", "finite numbers (no NaN or inf)"
        )
    if arr.size == 0 and not allow_empty:
        raise InvalidParameterError(name, "an empty array", "at least one value")
    return arr


def int_values(name: str, value: object) -> NDArray[np.int64]:
    """``value`` as an int64 array (0-d for a scalar), refusing floats, booleans and empties."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or isinstance(value, bool | np.bool_):
        raise InvalidParameterError(name, _describe(arr), "an integer or an array of integers")
    if arr.size == 0:
        raise InvalidParameterError(name, "an empty array", "at least one value")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise InvalidParameterError(name, int(arr.max()), "integers below 2**63")
    return arr.astype(np.int64)


def _describe(arr: NDArray[Any]) -> str:
    return f"an array of dtype {arr.dtype}" if arr.ndim else repr(arr.item())
