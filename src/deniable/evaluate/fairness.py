"""Fairness: per-group error rates, their gaps, and the disparate impact of differential privacy.

Per group ``g`` of a sensitive column (or of the true class), with ``ŷ`` the prediction, ``y`` the
label and ``p`` the *positive* label of a binary task:

- accuracy ``P(ŷ = y | g)``;
- true-positive rate ``P(ŷ = p | y = p, g)`` and false-positive rate ``P(ŷ = p | y ≠ p, g)``;
- selection rate ``P(ŷ = p | g)``.

Gaps are max − min over the groups where the rate is defined: the selection-rate gap is the
demographic-parity difference, max(TPR gap, FPR gap) the equalized-odds difference (Hardt, Price &
Srebro 2016), and min/max of the selection rates the disparate-impact ratio of the "80 % rule".

Disparate impact of DP (Bagdasaryan, Poursaeed & Shmatikov 2019, "Differential privacy has
disparate impact on model accuracy", NeurIPS): DP-SGD's clipping and noise cost more accuracy on
under-represented groups and classes — their gradients are rarer, larger and are clipped and
drowned in noise more. :func:`disparate_impact` compares the per-group accuracy of a non-private
and a private model and reports whether the smallest group (by training count) lost more than the
others. :func:`undersample_class` builds their experiment's training set: MNIST (or the embedded
digits) with one class kept only in part.

All rates are plain empirical fractions on the evaluation data; they are not differentially
private releases (the evaluation data is not the training data, but publish them with that in mind).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from torch import nn

from deniable.data import ArrayDataset, Split
from deniable.errors import DeniableError, InvalidParameterError, check_count
from deniable.evaluate._common import (
    DEFAULT_BATCH_SIZE,
    json_number,
    json_numbers,
    label_vector,
    predictions_on,
)

RATES: tuple[str, ...] = ("accuracy", "tpr", "fpr", "selection_rate")
"""The per-group rates, in the order of :class:`GroupMetrics`."""


@dataclass(frozen=True)
class GroupMetrics:
    """The rates of one group; TPR, FPR and selection rate are ``None`` without a positive label,
    and TPR (FPR) is ``None`` when the group has no positive (negative) example."""

    group: str
    n: int
    accuracy: float
    tpr: float | None
    fpr: float | None
    selection_rate: float | None

    def rate(self, name: str) -> float | None:
        """The rate called ``name`` (one of :data:`RATES`)."""
        value: float | None = getattr(self, name)
        return value

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {"group": self.group, "n": self.n, **json_numbers({r: self.rate(r) for r in RATES})}


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates of one model on one column, and their gaps.

    ``gaps[rate]`` is max − min over the groups where the rate is defined (``None`` with fewer
    than two such groups); ``equalized_odds_difference`` = max(TPR gap, FPR gap);
    ``selection_rate_ratio`` = min/max selection rate (disparate-impact ratio).
    """

    column: str
    positive_label: int | None
    overall_accuracy: float
    groups: tuple[GroupMetrics, ...]
    gaps: dict[str, float | None]
    equalized_odds_difference: float | None
    selection_rate_ratio: float | None

    def group(self, name: str) -> GroupMetrics:
        """The metrics of the group called ``name``."""
        for g in self.groups:
            if g.group == name:
                return g
        raise DeniableError(
            f"no group {name!r} in column {self.column!r}; groups: "
            + ", ".join(g.group for g in self.groups)
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields; undefined rates are ``null``."""
        return {
            "column": self.column,
            "positive_label": self.positive_label,
            "overall_accuracy": self.overall_accuracy,
            "groups": [g.to_dict() for g in self.groups],
            "gaps": json_numbers(self.gaps),
            "equalized_odds_difference": json_number(self.equalized_odds_difference),
            "selection_rate_ratio": json_number(self.selection_rate_ratio),
        }


def group_fairness(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    groups: ArrayLike,
    *,
    column: str = "group",
    group_names: Sequence[str] | None = None,
    positive_label: int | None = None,
) -> FairnessReport:
    """Per-group rates of predictions ``y_pred`` against labels ``y_true``.

    ``groups``: an integer code per example, named by ``group_names[code]`` (the codes themselves
    when ``None``). Only groups present in ``groups`` are reported, in code order.
    ``positive_label``: the positive class of a binary task; ``None`` (e.g. multiclass) reports
    accuracy only.

    >>> r = group_fairness([1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], positive_label=1)
    >>> [(g.group, g.accuracy, g.tpr, g.fpr, g.selection_rate) for g in r.groups]
    [('0', 0.5, 1.0, 1.0, 1.0), ('1', 0.5, 0.0, 0.0, 0.0)]
    >>> r.gaps["selection_rate"], r.equalized_odds_difference
    (1.0, 1.0)
    """
    y = label_vector("y_true", y_true)
    n = check_count("number of examples", y.shape[0])
    yhat = label_vector("y_pred", y_pred, n)
    codes = label_vector(f"groups of {column!r}", groups, n)
    if positive_label is not None:
        positive_label = check_count("positive_label", positive_label, 0)
    names = _names(codes, group_names, column)
    rows = []
    for code in np.unique(codes):
        member = codes == code
        rows.append(_group_metrics(names[int(code)], y[member], yhat[member], positive_label))
    gaps = {rate: _gap([g.rate(rate) for g in rows]) for rate in RATES}
    odds = [v for v in (gaps["tpr"], gaps["fpr"]) if v is not None]
    selection = [g.selection_rate for g in rows if g.selection_rate is not None]
    ratio = None
    if len(selection) >= 2 and max(selection) > 0:
        ratio = min(selection) / max(selection)
    return FairnessReport(
        column=column,
        positive_label=positive_label,
        overall_accuracy=float(np.mean(y == yhat)),
        groups=tuple(rows),
        gaps=gaps,
        equalized_odds_difference=max(odds) if odds else None,
        selection_rate_ratio=ratio,
    )


def fairness_report(
    model: nn.Module,
    data: ArrayDataset,
    column: str | None = None,
    *,
    positive_label: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> FairnessReport:
    """:func:`group_fairness` of ``model``'s predictions on ``data`` for one group column.

    ``column=None`` groups by the true class (column ``"class"``): each group's accuracy is then
    that class's recall, the view of Bagdasaryan et al. on MNIST.
    """
    codes, names, name = groups_of(data, column)
    y_pred = predictions_on(model, data, batch_size)
    return group_fairness(
        data.labels, y_pred, codes, column=name, group_names=names, positive_label=positive_label
    )


def groups_of(data: ArrayDataset, column: str | None) -> tuple[NDArray[np.int64], list[str], str]:
    """``(codes, names, column name)`` of a group column of ``data``, or of its classes."""
    if column is None:
        names = list(data.class_names or [str(c) for c in range(data.num_classes)])
        return data.labels, names, "class"
    if column not in data.groups:
        have = ", ".join(data.groups) or "none"
        raise DeniableError(
            f"dataset {data.name!r} has no group column {column!r} (group columns: {have})"
        )
    codes = data.groups[column]
    names = list(data.group_names.get(column) or [str(c) for c in range(int(codes.max()) + 1)])
    return codes, names, column


def group_counts(data: ArrayDataset, column: str | None) -> dict[str, int]:
    """How many examples of ``data`` fall in each group of ``column`` (``None``: each class)."""
    codes, names, _ = groups_of(data, column)
    values, counts = np.unique(codes, return_counts=True)
    return {names[int(v)]: int(c) for v, c in zip(values, counts, strict=True)}


@dataclass(frozen=True)
class GroupDrop:
    """One group's accuracy without and with DP, and the drop (baseline − private)."""

    group: str
    train_count: int
    n: int
    baseline_accuracy: float
    private_accuracy: float

    @property
    def drop(self) -> float:
        """Accuracy lost to privacy (positive = the private model is worse)."""
        return self.baseline_accuracy - self.private_accuracy

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, the drop included."""
        return {
            "group": self.group,
            "train_count": self.train_count,
            "n": self.n,
            "baseline_accuracy": self.baseline_accuracy,
            "private_accuracy": self.private_accuracy,
            "drop": self.drop,
        }


@dataclass(frozen=True)
class DisparateImpact:
    """Per-group accuracy drop from a non-private to a private model (Bagdasaryan et al. 2019).

    ``underrepresented``: the group with the fewest training examples; ``others_drop``: the drop
    of all other groups together (their accuracies weighted by evaluation count);
    ``hurts_underrepresented_more``: its drop exceeds ``others_drop``. ``drop_gap``: max − min
    drop over groups. ``size_drop_correlation``: Spearman's ρ between training count and drop over
    groups (negative: smaller groups lose more); ``None`` with fewer than three groups.
    """

    column: str
    groups: tuple[GroupDrop, ...]
    underrepresented: str
    underrepresented_drop: float
    others_drop: float
    drop_gap: float
    size_drop_correlation: float | None

    @property
    def hurts_underrepresented_more(self) -> bool:
        """Whether the smallest group lost more accuracy than the rest."""
        return self.underrepresented_drop > self.others_drop

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "column": self.column,
            "groups": [g.to_dict() for g in self.groups],
            "underrepresented": self.underrepresented,
            "underrepresented_drop": self.underrepresented_drop,
            "others_drop": self.others_drop,
            "hurts_underrepresented_more": self.hurts_underrepresented_more,
            "drop_gap": self.drop_gap,
            "size_drop_correlation": json_number(self.size_drop_correlation),
        }


def disparate_impact(
    baseline: FairnessReport,
    private: FairnessReport,
    train_counts: Mapping[str, int] | None = None,
) -> DisparateImpact:
    """Compare per-group accuracy of a non-private (``baseline``) and a private model.

    Both reports must cover the same groups of the same column (the same evaluation data).
    ``train_counts``: training examples per group (:func:`group_counts` of the training split),
    which decide who is under-represented; without them the evaluation counts are used.
    """
    if baseline.column != private.column:
        raise DeniableError(
            f"baseline report is for column {baseline.column!r}, private for {private.column!r}"
        )
    base = {g.group: g for g in baseline.groups}
    priv = {g.group: g for g in private.groups}
    if set(base) != set(priv) or any(base[k].n != priv[k].n for k in base):
        raise DeniableError(
            "baseline and private reports cover different groups or counts: evaluate both models "
            "on the same data"
        )
    counts = dict(train_counts) if train_counts is not None else {k: g.n for k, g in base.items()}
    missing = [k for k in base if k not in counts]
    if missing:
        raise DeniableError(f"train_counts has no count for group(s) {', '.join(missing)}")
    drops = tuple(
        GroupDrop(k, int(counts[k]), base[k].n, base[k].accuracy, priv[k].accuracy) for k in base
    )
    if len(drops) < 2:
        raise DeniableError(f"column {baseline.column!r} has one group: nothing to compare")
    smallest = min(drops, key=lambda g: (g.train_count, g.n))
    rest = [g for g in drops if g is not smallest]
    weight = sum(g.n for g in rest)
    others = sum(g.drop * g.n for g in rest) / weight
    correlation = None
    if len(drops) >= 3:
        sizes = [g.train_count for g in drops]
        losses = [g.drop for g in drops]
        if len(set(sizes)) > 1 and len(set(losses)) > 1:
            correlation = float(stats.spearmanr(sizes, losses).statistic)
    return DisparateImpact(
        column=baseline.column,
        groups=drops,
        underrepresented=smallest.group,
        underrepresented_drop=smallest.drop,
        others_drop=float(others),
        drop_gap=max(g.drop for g in drops) - min(g.drop for g in drops),
        size_drop_correlation=correlation,
    )


def undersample_class(
    data: ArrayDataset, label: int, fraction: float, *, seed: int = 0
) -> ArrayDataset:
    """``data`` with only ``round(fraction · count)`` (at least 1) examples of class ``label``.

    The kept examples are a seeded uniform choice; other classes are untouched and the order of
    the remaining examples is kept. Bagdasaryan et al. (2019) reduce MNIST's class 8 this way to
    show that DP-SGD costs the rare class far more accuracy; apply it to the training part only
    (see :func:`undersampled_split`).
    """
    label = check_count("label", label, 0)
    if label >= data.num_classes:
        raise InvalidParameterError("label", label, f"a class in [0, {data.num_classes})")
    if isinstance(fraction, bool) or not (
        isinstance(fraction, int | float) and 0 < fraction <= 1 and math.isfinite(fraction)
    ):
        raise InvalidParameterError("fraction", fraction, "in (0, 1]")
    members = np.flatnonzero(data.labels == label)
    if members.size == 0:
        raise DeniableError(f"dataset {data.name!r} has no example of class {label}")
    keep_count = max(1, round(fraction * members.size))
    kept = np.random.default_rng(seed).choice(members, size=keep_count, replace=False)
    mask = data.labels != label
    mask[kept] = True
    note = (
        f"{data.name}: class {label} under-sampled to {keep_count} of {members.size} examples "
        f"(fraction {fraction:g}, seed {seed})"
    )
    out = data.subset(mask)
    return replace(out, notes=(*out.notes, note))


def undersampled_split(split: Split, label: int, fraction: float, *, seed: int = 0) -> Split:
    """``split`` with class ``label`` under-sampled in the training part only (test unchanged)."""
    return Split(train=undersample_class(split.train, label, fraction, seed=seed), test=split.test)


def _group_metrics(
    name: str, y: NDArray[np.int64], yhat: NDArray[np.int64], positive: int | None
) -> GroupMetrics:
    accuracy = float(np.mean(y == yhat))
    if positive is None:
        return GroupMetrics(name, int(y.size), accuracy, None, None, None)
    pos, chosen = y == positive, yhat == positive
    tpr = float(np.mean(chosen[pos])) if pos.any() else None
    fpr = float(np.mean(chosen[~pos])) if (~pos).any() else None
    return GroupMetrics(name, int(y.size), accuracy, tpr, fpr, float(np.mean(chosen)))


def _gap(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return max(defined) - min(defined) if len(defined) >= 2 else None


def _names(codes: NDArray[np.int64], group_names: Sequence[str] | None, column: str) -> list[str]:
    if codes.size and int(codes.min()) < 0:
        raise DeniableError(f"group codes of {column!r} must be >= 0, got {int(codes.min())}")
    if group_names is None:
        return [str(c) for c in range(int(codes.max()) + 1)]
    names = [str(n) for n in group_names]
    if int(codes.max()) >= len(names):
        raise DeniableError(
            f"group code {int(codes.max())} of {column!r} has no name ({len(names)} group_names)"
        )
    return names
