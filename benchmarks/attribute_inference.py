"""Attribute inference of `sex` on UCI Adult: non-private vs DP-SGD models (MLP).

Prints one JSON object: each model's test accuracy, ε, and the attribute-inference accuracies
(members, non-members, no-query baseline).

    .venv/bin/python benchmarks/attribute_inference.py --data-dir ../shared/data/adult
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deniable.audit.attribute import attribute_inference
from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.train.trainer import train_baseline, train_private


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--epsilon", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--epochs", type=float, default=5)
    args = parser.parse_args()
    split = load_dataset("adult", args.data_dir)
    rows = []
    config = TrainConfig(
        dataset="adult", data_dir=args.data_dir, model="mlp", epochs=args.epochs,
        batch_size=512, learning_rate=0.2, baseline_epochs=20,
    )
    model, accuracy, _ = train_baseline(split, config)
    rows.append({"epsilon": None, "test_accuracy": accuracy,
                 **attribute_inference(model, split, "sex").to_dict()})
    for eps in args.epsilon:
        outcome = train_private(split, config.model_copy(update={"target_epsilon": eps}))
        rows.append({"epsilon": outcome.training.epsilon(config.delta).epsilon,
                     "test_accuracy": outcome.test_accuracy,
                     **attribute_inference(outcome.model, split, "sex").to_dict()})
    print(json.dumps({"benchmark": "attribute-inference-adult-sex", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
