"""Input checks shared by the membership-inference attacks: shapes, finiteness, membership masks.

Attacks take signals as arrays with a trailing *query* axis (one column per augmentation query);
a 1-D signal is one query. Every check raises :class:`~deniable.errors.DeniableError` with one
line that names the argument.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.errors import DeniableError


def per_example(name: str, values: ArrayLike) -> NDArray[np.float64]:
    """``values`` as a finite float64 array ``(n, n_queries)``; a vector is one query."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DeniableError(f"{name} needs shape (n,) or (n, n_queries), got {arr.shape}")
    _check_finite(name, arr)
    return arr


def per_model(name: str, values: ArrayLike, n: int, n_queries: int) -> NDArray[np.float64]:
    """``values`` as a finite float64 array ``(n_models, n, n_queries)`` matching the target."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[1:] != (n, n_queries):
        raise DeniableError(
            f"{name} needs shape (n_models, {n}) or (n_models, {n}, {n_queries}) to match the "
            f"target's {n} examples and {n_queries} queries, got {arr.shape}"
        )
    _check_finite(name, arr)
    return arr


def membership_mask(name: str, values: ArrayLike, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """A bool matrix ``(n_models, n)``: True where the model trained on the example."""
    arr = np.asarray(values)
    if arr.shape != shape:
        raise DeniableError(f"{name} needs shape (n_models, n) = {shape}, got {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise DeniableError(f"{name} must be boolean (or 0/1): True where a model saw x")
        arr = arr.astype(bool)
    return arr


def need_models(attack: str, count: int, minimum: int = 2) -> None:
    """Refuse fewer than ``minimum`` reference or shadow models."""
    if count < minimum:
        raise DeniableError(f"{attack} needs at least {minimum} shadow models, got {count}")


def need_counts(attack: str, side: str, counts: NDArray[np.int64], minimum: int) -> None:
    """Refuse when some example has fewer than ``minimum`` ``side`` (IN/OUT) shadow models."""
    short = np.flatnonzero(counts < minimum)
    if short.size:
        i = int(short[0])
        raise DeniableError(
            f"{attack}: example {i} has {int(counts[i])} {side} shadow models (needs >= "
            f"{minimum}; {short.size} examples short); train more shadows"
        )


def _check_finite(name: str, arr: NDArray[np.float64]) -> None:
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        raise DeniableError(f"{name} has a non-finite value at {tuple(int(i) for i in bad[0])}")
