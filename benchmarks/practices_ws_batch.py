"""The measured effect of GroupNorm, weight standardisation and large batches (issue #12).

DP-SGD on MNIST at one (ε, δ), everything else fixed (data, clipping norm, epochs, seed):

1. normalisation, at the base batch and learning rate: the tanh CNN of Papernot et al. (2021)
   (``papernot-cnn``), the same net with GroupNorm after each convolution (``papernot-gn-cnn``),
   and with weight-standardised convolutions as well (``papernot-ws-gn-cnn``; Kolesnikov et al.
   2020, "Big Transfer"; De et al. 2022, "Unlocking High-Accuracy Differentially Private Image
   Classification through Scale");
2. large batches: expected batch B ∈ --batches with the learning rate scaled linearly,
   lr = base-lr · B / base-batch, for each of --batch-models, the same number of epochs (so
   fewer steps for larger B).

σ is calibrated by the PLD accountant for the target ε over each whole run (a larger sampling
rate needs a larger σ); the ε reported is the accountant's on the recorded events. Prints one
JSON object; progress goes to stderr.

    .venv/bin/python benchmarks/practices_ws_batch.py --data-dir ../shared/data/mnist --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.train.trainer import train_private

MODELS = ("papernot-cnn", "papernot-gn-cnn", "papernot-ws-gn-cnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--base-batch", type=int, default=512)
    parser.add_argument("--base-lr", type=float, default=4.0)
    parser.add_argument("--batches", nargs="+", type=int, default=[256, 512, 1024, 2048])
    parser.add_argument("--batch-models", nargs="*", default=["papernot-cnn"])
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    runs = [(model, args.base_batch) for model in args.models]
    runs += [
        (model, batch)
        for model in args.batch_models
        for batch in args.batches
        if (model, batch) not in runs
    ]
    rows = []
    for model, batch in runs:
        config = TrainConfig(
            dataset=args.dataset,
            data_dir=args.data_dir,
            model=model,
            epochs=args.epochs,
            batch_size=batch,
            learning_rate=args.base_lr * batch / args.base_batch,
            momentum=args.momentum,
            max_grad_norm=args.max_grad_norm,
            target_epsilon=args.epsilon,
            delta=args.delta,
            seed=args.seed,
        )
        start = time.perf_counter()
        outcome = train_private(split, config)
        seconds = time.perf_counter() - start
        spent = outcome.training.epsilon(args.delta)
        row = {
            "model": model,
            "batch_size": batch,
            "learning_rate": config.learning_rate,
            "noise_multiplier": outcome.training.noise_multiplier,
            "steps": outcome.training.steps_done,
            "epsilon": spent.epsilon,
            "delta": spent.delta,
            "accountant": spent.accountant,
            "test_accuracy": outcome.test_accuracy,
            "train_accuracy": outcome.train_accuracy,
            "per_sample": outcome.per_sample.get("method"),
            "seconds": seconds,
        }
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    report = {
        "benchmark": "dp-sgd-ws-gn-large-batch",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
