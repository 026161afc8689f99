"""The measured effect of augmentation multiplicity and parameter averaging (issue #12).

DP-SGD at one ε with the same model, data, batch, clipping, steps and seeds, four ways: plain;
augmentation multiplicity (K random shifts of each example, gradients averaged before clipping:
De et al. 2022); parameter averaging (EMA of the iterates); both. Neither changes ε (the tests
check the recorded events are the same); only accuracy and time change. Mean ± sd over seeds.

    .venv/bin/python benchmarks/practices.py [--dataset digits] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.train.trainer import train_private

VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "augmentation x4": {"augmentation": "shift", "augmentation_multiplicity": 4},
    "ema": {"ema_decay": 0.99},
    "augmentation x4 + ema": {
        "augmentation": "shift",
        "augmentation_multiplicity": 4,
        "ema_decay": 0.99,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--epochs", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--pad", type=int, default=1, help="shift augmentation: pixels")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.variants:
        extra = dict(VARIANTS[name])
        if "ema_decay" in extra:
            extra["ema_decay"] = args.ema_decay
        accuracies, epsilons, seconds = [], [], []
        for seed in range(args.seeds):
            split = load_dataset(args.dataset, args.data_dir, seed=seed)
            config = TrainConfig(
                dataset=args.dataset,
                model=args.model,
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                momentum=args.momentum,
                max_grad_norm=args.max_grad_norm,
                target_epsilon=args.epsilon,
                augmentation_pad=args.pad,
                seed=seed,
                **extra,  # type: ignore[arg-type]
            )
            start = time.perf_counter()
            outcome = train_private(split, config)
            seconds.append(time.perf_counter() - start)
            accuracies.append(outcome.test_accuracy)
            epsilons.append(outcome.training.epsilon(config.delta).epsilon)
        rows.append(
            {
                "variant": name,
                "test_accuracy_mean": statistics.mean(accuracies),
                "test_accuracy_sd": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "accuracies": accuracies,
                "epsilon": max(epsilons),
                "seconds_mean": statistics.mean(seconds),
            }
        )
    report = {
        "benchmark": "dp-sgd-practices",
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
