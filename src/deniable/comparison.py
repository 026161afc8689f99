"""Noise placements side by side at the same target ε: one table for ``deniable run``.

Each method of ``config.compare`` (and the run's own ``config.method``) is trained on the same
private training data at ``config.target_epsilon`` and evaluated on the same held-out examples
(the second half of the test split when PATE is among them, since PATE's students learn from the
first half; else the whole test split), beside the non-private baseline. The guarantee column
keeps apart what the ε's mean: central DP of an example, label DP, local DP of a record.

The comparison models are diagnostics, not releases: only the run's own model is checkpointed.
Picking the best method by this table and then releasing it is tuning on private data, which
costs privacy too (Papernot & Steinke 2022); the table says so.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deniable.config import Method, TrainConfig
from deniable.data import Split
from deniable.methods import public_split, train_method
from deniable.train.trainer import accuracy, train_baseline, train_private

Progress = Callable[[int, int], None]
CLAIM_KEYS = ("guarantee", "unit", "epsilon", "delta")

TUNING_NOTE = (
    "each row spent its own ε on the same data; choosing a method by this table and releasing "
    "its model is tuning on private data, which costs privacy too (Papernot & Steinke 2022)"
)


def compare_methods(
    split: Split,
    config: TrainConfig,
    run: tuple[nn.Module, dict[str, object]] | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, object]:
    """The comparison table: one row per method (the run's own first, reusing its model and
    claim when given as ``run``) and one for the non-private baseline, all evaluated on the same
    examples."""
    methods: list[Method] = [config.method]
    methods += [m for m in config.compare if m not in methods]
    evaluation = public_split(split)[1] if "pate" in methods else split
    rows: list[dict[str, object]] = []
    for done, method in enumerate(methods):
        if method == config.method and run is not None:
            model, claim = run[0], {key: run[1][key] for key in CLAIM_KEYS}
        else:
            model, claim = _train(split, config, method)
        row: dict[str, object] = {"method": method, **claim}
        row["test_accuracy"] = accuracy(model, evaluation.test)
        row["train_accuracy"] = accuracy(model, split.train)
        rows.append(row)
        if progress is not None:
            progress(done + 1, len(methods) + 1)
    baseline, _, train_acc = train_baseline(split, config)
    rows.append(
        {
            "method": "none (non-private)",
            "guarantee": "none",
            "epsilon": float("inf"),
            "test_accuracy": accuracy(baseline, evaluation.test),
            "train_accuracy": train_acc,
        }
    )
    if progress is not None:
        progress(len(methods) + 1, len(methods) + 1)
    return {
        "target_epsilon": config.target_epsilon,
        "delta": config.delta,
        "evaluated_on": (
            "second half of the test split (PATE's public data is the first)"
            if "pate" in methods
            else "the test split"
        ),
        "evaluation_size": len(evaluation.test),
        "rows": rows,
        "note": TUNING_NOTE,
    }


def _train(
    split: Split, config: TrainConfig, method: Method
) -> tuple[nn.Module, dict[str, object]]:
    if method == "dpsgd":
        outcome = train_private(split, config)
        eps = outcome.training.epsilon(config.delta, config.accountant)
        return outcome.model, {
            "guarantee": "central-dp",
            "unit": outcome.training.tracker.unit,
            "epsilon": eps.epsilon,
            "delta": eps.delta,
        }
    trained = train_method(split, config, method)
    claim = trained.claim.to_dict()
    return trained.model, {key: claim[key] for key in CLAIM_KEYS}
