"""One JSON-ready summary of what privacy cost beyond accuracy, for ``result.json``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from deniable.data import Split
from deniable.errors import DeniableError
from deniable.evaluate._common import DEFAULT_BATCH_SIZE, predictions_on
from deniable.evaluate.fairness import disparate_impact, group_counts, group_fairness, groups_of
from deniable.evaluate.generalisation import generalisation_report


def beyond_privacy_summary(
    split: Split,
    private_model: nn.Module,
    baseline_model: nn.Module,
    *,
    epsilon: float | None = None,
    delta: float = 0.0,
    group_columns: Sequence[str] | None = None,
    positive_label: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, object]:
    """Fairness and generalisation of a private model next to its non-private baseline.

    ``fairness``: per group column (``group_columns``; ``None`` = every group column of the test
    split, or the true class when it has none), each model's per-group rates
    (:func:`~deniable.evaluate.fairness.group_fairness`) and the disparate impact of DP with
    training counts from ``split.train``. ``positive_label`` defaults to 1 for binary tasks (TPR,
    FPR and selection rates), none for multiclass (accuracy only).
    ``generalisation``: train/test accuracy and loss gaps and Yeom et al.'s threshold attack for
    both models; ``epsilon``/``delta`` (the private model's guarantee) add the advantage bound.
    """
    if positive_label is None and split.num_classes == 2:
        positive_label = 1
    columns: list[str | None]
    if group_columns is None:
        columns = list(split.test.groups) or [None]
    else:
        columns = list(group_columns)
        if not columns:
            raise DeniableError("group_columns is empty: give column names, or None for all")
    test = split.test
    predicted = {
        "baseline": predictions_on(baseline_model, test, batch_size),
        "private": predictions_on(private_model, test, batch_size),
    }
    fairness: dict[str, object] = {}
    for column in columns:
        codes, names, name = groups_of(test, column)
        reports = {
            which: group_fairness(
                test.labels,
                y_pred,
                codes,
                column=name,
                group_names=names,
                positive_label=positive_label,
            )
            for which, y_pred in predicted.items()
        }
        have = group_counts(split.train, column) if _has(split, column) else {}
        counts = {g.group: have.get(g.group, 0) for g in reports["baseline"].groups}
        entry: dict[str, object] = {k: r.to_dict() for k, r in reports.items()}
        entry["disparate_impact"] = (
            disparate_impact(reports["baseline"], reports["private"], counts).to_dict()
            if len(counts) >= 2
            else None
        )
        fairness[name] = entry
    generalisation = {
        "private": generalisation_report(
            private_model, split.train, test, epsilon=epsilon, delta=delta, batch_size=batch_size
        ).to_dict(),
        "baseline": generalisation_report(
            baseline_model, split.train, test, batch_size=batch_size
        ).to_dict(),
    }
    return {
        "grouping": "groups" if columns != [None] else "class",
        "fairness": fairness,
        "generalisation": generalisation,
    }


def _has(split: Split, column: str | None) -> bool:
    return column is None or column in split.train.groups
