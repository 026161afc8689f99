"""MNIST (or Fashion-MNIST) with DP-SGD at a target ε: the accuracy benchmark of the engine.

The Papernot et al. (2021) tanh CNN, Poisson sampling, σ calibrated by the PLD accountant so that
the whole run spends exactly the target ε at δ = 1e-5. Prints one JSON object (accuracy, ε from the
recorded events, wall time) and, with --out, writes it to a file.

    .venv/bin/python benchmarks/mnist.py --data-dir ../shared/data/mnist --target-epsilon 3
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.train.trainer import train_private


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", default="papernot-cnn")
    parser.add_argument("--target-epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--epochs", type=float, default=40)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=4.0)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        max_grad_norm=args.max_grad_norm,
        target_epsilon=args.target_epsilon,
        delta=args.delta,
        seed=args.seed,
    )
    split = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"step {done}/{total} {time.perf_counter() - start:.0f}s", flush=True)

    outcome = train_private(split, config, progress=progress)
    seconds = time.perf_counter() - start
    eps = outcome.training.epsilon(args.delta)
    result = {
        "benchmark": "mnist-dpsgd",
        "dataset": args.dataset,
        "model": args.model,
        "test_accuracy": outcome.test_accuracy,
        "train_accuracy": outcome.train_accuracy,
        "epsilon": eps.epsilon,
        "delta": eps.delta,
        "accountant": eps.accountant,
        "noise_multiplier": outcome.training.noise_multiplier,
        "steps": outcome.training.steps_done,
        "epsilon_curve": outcome.epsilon_curve,
        "seconds": seconds,
        "config": config.model_dump(mode="json"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
