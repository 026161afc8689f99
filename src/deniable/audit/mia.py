"""Membership inference attacks: signals in, one score per target example out (higher = member).

The *scores* stage of the audit pipeline (models → signals → scores → metrics). Attacks read
arrays of signals (:mod:`deniable.audit.signals`, :mod:`deniable.audit.shadows`), never models,
and never compute ε: :mod:`deniable.audit.metrics` and :mod:`deniable.audit.bounds` turn scores
and true membership into ROC curves and lower bounds.

- :func:`loss_attack`: the threshold attack of Yeom, Giacomelli, Fredrikson & Jha (2018),
  "Privacy risk in machine learning: analyzing the connection to overfitting"; score = −loss.
- :func:`lira_online`, :func:`lira_offline`: LiRA (Carlini et al. 2022), :mod:`.mia_lira`.
- :func:`rmia_online`, :func:`rmia_offline`: RMIA (Zarifzadeh et al. 2024), :mod:`.mia_rmia`.
- :func:`label_only_attack`: Choquette-Choo, Tramèr, Carlini & Papernot (2021), "Label-only
  membership inference attacks"; score = fraction of perturbed queries still classified
  correctly (members sit further from the decision boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.audit.mia_common import per_example
from deniable.audit.mia_lira import (
    GaussianFit,
    LiraResult,
    fit_gaussians,
    lira_offline,
    lira_online,
)
from deniable.audit.mia_rmia import RmiaResult, rmia_offline, rmia_online
from deniable.errors import DeniableError

__all__ = [
    "GaussianFit",
    "LabelOnlyResult",
    "LiraResult",
    "LossAttackResult",
    "RmiaResult",
    "fit_gaussians",
    "label_only_attack",
    "lira_offline",
    "lira_online",
    "loss_attack",
    "rmia_offline",
    "rmia_online",
]


@dataclass(frozen=True, eq=False)
class LossAttackResult:
    """LOSS-attack scores ``−mean loss over queries`` and the losses ``(n, n_queries)`` used."""

    name: ClassVar[str] = "loss"
    scores: NDArray[np.float64]
    losses: NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class LabelOnlyResult:
    """Label-only scores (fraction of queries classified correctly) and the ``(n, q)`` hits."""

    name: ClassVar[str] = "label-only"
    scores: NDArray[np.float64]
    correct: NDArray[np.bool_]


def loss_attack(losses: ArrayLike) -> LossAttackResult:
    """Score = −loss (averaged over queries): members of an overfit model have low loss.

    ``losses``: the target's per-example loss, ``(n,)`` or ``(n, n_queries)``. The threshold
    that turns scores into decisions is chosen later (metrics), on held-out data.
    """
    values = per_example("losses", losses)
    return LossAttackResult(scores=-values.mean(axis=1), losses=values)


def label_only_attack(correct: ArrayLike) -> LabelOnlyResult:
    """Score = fraction of an example's perturbed queries the target still labels correctly.

    ``correct``: bool ``(n, n_queries)`` from :func:`deniable.audit.signals.label_only_queries`
    (augmentations and/or Gaussian input noise); needs only the predicted labels.
    """
    arr = np.asarray(correct)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DeniableError(f"correct needs shape (n, n_queries), got {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise DeniableError("correct must be boolean (or 0/1): whether each query was right")
        arr = arr.astype(bool)
    return LabelOnlyResult(scores=arr.mean(axis=1, dtype=np.float64), correct=arr)
