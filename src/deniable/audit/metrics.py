"""Attack scores → ROC, AUC, TPR at low FPR and membership advantage.

Every attack in :mod:`deniable.audit` produces one score per candidate, higher meaning "more
likely a member"; this module turns ``(scores, is_member)`` into the field's standard metrics.
Following Carlini et al. 2022 ("Membership inference attacks from first principles"), the headline
numbers are the TPR at 1 %, 0.1 % and 0 % FPR (read on the exact, log-log plottable ROC), with AUC
and the membership advantage max(TPR − FPR) of Yeom et al. 2018 ("Privacy risk in machine
learning") alongside.

The ROC is exact: one point per distinct score, a candidate being called a member when its score
is ≥ the threshold, so tied scores move TPR and FPR together (a diagonal segment) and the AUC
equals the Mann–Whitney statistic with ties counted one half.

>>> roc = roc_curve([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
>>> roc.fpr.tolist(), roc.tpr.tolist()
([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
>>> auc(roc)
0.75
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.errors import DeniableError, InvalidParameterError

DEFAULT_FPR_LEVELS: tuple[float, ...] = (0.01, 0.001, 0.0)


def validate_scores(
    scores: ArrayLike, is_member: ArrayLike, *, labels: str = "is_member"
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``(scores, is_member)`` as a finite float64 vector and a bool vector of the same length.

    ``is_member`` may be bool or 0/1. Both classes must be present. ``labels`` names the label
    argument in error messages (e.g. ``"included"`` for one-run canaries).
    """
    s = np.asarray(scores, dtype=np.float64) if _numeric(scores) else None
    if s is None or s.ndim != 1:
        raise DeniableError("scores must be a 1-D array of numbers, one score per candidate")
    if s.size == 0:
        raise DeniableError("scores is empty: give at least one member and one non-member score")
    bad = int(np.count_nonzero(~np.isfinite(s)))
    if bad:
        raise DeniableError(f"scores must be finite, got {bad} NaN or infinite values")
    m = np.asarray(is_member)
    if m.ndim != 1 or m.shape[0] != s.shape[0]:
        raise DeniableError(
            f"scores and {labels} must be 1-D of the same length, got {s.shape} and {m.shape}"
        )
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iuf" or not np.isin(m, (0, 1)).all():
            raise DeniableError(f"{labels} must be boolean (or 0/1): True for members")
        m = m.astype(bool)
    n_in = int(np.count_nonzero(m))
    if n_in == 0 or n_in == m.size:
        raise DeniableError(
            f"{labels} must contain both members and non-members, got {n_in} of {m.size} members"
        )
    return s, m


def _numeric(values: ArrayLike) -> bool:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        return False
    return arr.dtype.kind in "biuf"


@dataclass(frozen=True, eq=False)
class ROC:
    """An exact ROC curve: point ``i`` calls a candidate a member when score ≥ ``thresholds[i]``.

    ``thresholds`` decrease from +inf (the point (0, 0)) to the smallest score (the point (1, 1));
    ``fpr`` and ``tpr`` are non-decreasing. Arrays are read-only.
    """

    fpr: NDArray[np.float64]
    tpr: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    n_members: int
    n_nonmembers: int


def roc_curve(scores: ArrayLike, is_member: ArrayLike) -> ROC:
    """The exact ROC of thresholding ``scores`` (higher = member), one point per distinct score."""
    s, m = validate_scores(scores, is_member)
    order = np.argsort(-s, kind="stable")
    s_sorted, m_sorted = s[order], m[order]
    tp = np.cumsum(m_sorted)
    fp = np.cumsum(~m_sorted)
    # Keep the last index of each run of equal scores: a threshold admits all ties at once.
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    n_in, n_out = int(tp[-1]), int(fp[-1])
    fpr = np.r_[0.0, fp[last] / n_out]
    tpr = np.r_[0.0, tp[last] / n_in]
    thresholds = np.r_[np.inf, s_sorted[last]]
    for arr in (fpr, tpr, thresholds):
        arr.setflags(write=False)
    return ROC(fpr=fpr, tpr=tpr, thresholds=thresholds, n_members=n_in, n_nonmembers=n_out)


def auc(roc: ROC) -> float:
    """Area under the ROC (trapezoids; equals the Mann–Whitney U / (n₁n₀), ties counted ½)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2))


def tpr_at_fpr(roc: ROC, fpr_levels: Sequence[float] = DEFAULT_FPR_LEVELS) -> dict[float, float]:
    """For each level, the largest TPR of a threshold whose FPR is ≤ the level (no interpolation).

    At level 0 this is the fraction of members scoring strictly above every non-member.
    """
    out: dict[float, float] = {}
    for level in fpr_levels:
        if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 <= level <= 1:
            raise InvalidParameterError("fpr_levels", level, "numbers in [0, 1]")
        ok = roc.fpr <= level
        out[float(level)] = float(np.max(roc.tpr[ok]))  # (0, 0) always qualifies
    return out


def membership_advantage(roc: ROC) -> float:
    """max over thresholds of TPR − FPR (Yeom et al. 2018); 0 for a useless attack."""
    return float(np.max(roc.tpr - roc.fpr))


@dataclass(frozen=True)
class AttackMetrics:
    """The standard summary of one attack's scores."""

    auc: float
    tpr_at_fpr: dict[float, float]
    advantage: float
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict; TPR levels keyed as ``"tpr_at_fpr_0.01"`` etc."""
        out: dict[str, object] = {
            "auc": self.auc,
            "advantage": self.advantage,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }
        for level, tpr in self.tpr_at_fpr.items():
            out[f"tpr_at_fpr_{level:g}"] = tpr
        return out


def attack_metrics(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    fpr_levels: Sequence[float] = DEFAULT_FPR_LEVELS,
) -> AttackMetrics:
    """AUC, TPR at each FPR level, advantage and class counts of one attack's scores."""
    roc = roc_curve(scores, is_member)
    return AttackMetrics(
        auc=auc(roc),
        tpr_at_fpr=tpr_at_fpr(roc, fpr_levels),
        advantage=membership_advantage(roc),
        n_members=roc.n_members,
        n_nonmembers=roc.n_nonmembers,
    )
