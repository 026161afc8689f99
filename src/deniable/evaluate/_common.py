"""Helpers shared by the evaluations: model outputs on a dataset, checks of label vectors."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from deniable.audit.signals import model_logits
from deniable.data import ArrayDataset
from deniable.errors import DeniableError

DEFAULT_BATCH_SIZE = 1024


def logits_on(
    model: nn.Module, data: ArrayDataset, batch_size: int = DEFAULT_BATCH_SIZE
) -> torch.Tensor:
    """Logits ``(n, C)`` of ``model`` on every example of ``data`` (eval mode, no gradients)."""
    x, _ = data.to_tensors()
    return model_logits(model, x, batch_size=batch_size)[:, 0, :]


def predictions_on(
    model: nn.Module, data: ArrayDataset, batch_size: int = DEFAULT_BATCH_SIZE
) -> NDArray[np.int64]:
    """The predicted class of each example of ``data``."""
    return logits_on(model, data, batch_size).argmax(dim=1).numpy().astype(np.int64)


def label_vector(name: str, values: ArrayLike, n: int | None = None) -> NDArray[np.int64]:
    """``values`` as a 1-D int64 vector (of length ``n`` when given); non-integers are errors."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "a 1-D array" if n is None else f"a 1-D array of length {n}"
        raise DeniableError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise DeniableError(f"{name} must hold integers, got dtype {arr.dtype}")


def json_number(value: float | None) -> float | None:
    """``value`` for strict JSON: NaN and ±∞ (an infinite ε, an undefined rate) become ``None``."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_numbers(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """:func:`json_number` applied to each value of a mapping."""
    return {k: json_number(v) for k, v in values.items()}
