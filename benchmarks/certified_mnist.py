"""Certified L2 robustness on MNIST by randomized smoothing, private vs non-private (issue #8).

Cohen, Rosenfeld & Kolter (2019): a base classifier trained with Gaussian noise augmentation
(σ = ``--sigma``, added to every training input at every step) is smoothed with the same σ;
CERTIFY (``n0`` selection and ``n`` estimation draws, Clopper–Pearson at 1 − α) gives a class and
an L2 radius per test input, and certified accuracy at radius r is the fraction of test inputs
certified correct with radius ≥ r. Two base models, the same MLP (784-128-10), the same
augmentation: DP-SGD at ``--target-epsilon`` (δ = 1e-5, PLD accountant, Poisson sampling; the
augmentation noise is drawn after sampling and before per-example clipping, so it does not change
the privacy analysis) and non-private SGD. ``--controls`` adds both models trained without
augmentation. Certification uses a seeded subset of ``--limit`` test images (the full test set
for the clean accuracy of the base models). Prints one JSON object.

    .venv/bin/python benchmarks/certified_mnist.py --data-dir ../shared/data/mnist --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deniable.data import Split, load_dataset
from deniable.evaluate import SmoothedClassifier, certify_dataset, train_noise_augmented
from deniable.models import build_model
from deniable.train.private import make_private
from deniable.train.trainer import accuracy

DELTA = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--sigma", type=float, default=0.25, help="augmentation = smoothing σ")
    parser.add_argument("--target-epsilon", type=float, default=3.0)
    parser.add_argument("--epochs", type=float, default=15)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--baseline-epochs", type=int, default=10)
    parser.add_argument("--baseline-learning-rate", type=float, default=0.05)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--limit", type=int, default=500, help="test images to certify")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--controls", action="store_true", help="also train without augmentation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    split = load_dataset("mnist", args.data_dir)
    chosen = np.sort(
        np.random.default_rng(args.seed).choice(len(split.test), size=args.limit, replace=False)
    )
    subset = split.test.subset(chosen)
    augmentations = [args.sigma, 0.0] if args.controls else [args.sigma]
    rows = []
    for aug in augmentations:
        for private in (True, False):
            began = time.perf_counter()
            if private:
                model, epsilon, noise = _train_private(split, args, aug)
            else:
                model, epsilon, noise = _train_baseline(split, args, aug), None, None
            trained = time.perf_counter() - began
            smoothed = SmoothedClassifier(model, split.num_classes, args.sigma, batch_size=2000)
            report = certify_dataset(
                smoothed, subset, n0=args.n0, n=args.n, alpha=args.alpha, seed=args.seed
            )
            row = {
                "private": private,
                "epsilon": epsilon,
                "noise_multiplier": noise,
                "augmentation_sigma": aug,
                "test_accuracy": accuracy(model, split.test),
                "subset_accuracy": accuracy(model, subset),
                **report.to_dict(radii=(0.0, *args.radii)),
                "train_seconds": round(trained, 1),
                "certify_seconds": round(time.perf_counter() - began - trained, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "benchmark": "certified-mnist-smoothing",
        "model": args.model,
        "smoothing_sigma": args.sigma,
        "target_epsilon": args.target_epsilon,
        "delta": DELTA,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "max_grad_norm": args.max_grad_norm,
        "baseline_epochs": args.baseline_epochs,
        "baseline_learning_rate": args.baseline_learning_rate,
        "certified_examples": args.limit,
        "n0": args.n0,
        "n": args.n,
        "alpha": args.alpha,
        "max_certifiable_radius": args.sigma * _max_z(args.n, args.alpha),
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps(out, indent=2))


def _train_private(
    split: Split, args: argparse.Namespace, aug: float
) -> tuple[nn.Module, float, float]:
    """DP-SGD with Gaussian augmentation of every sampled input; (model, ε, σ_DP)."""
    torch.manual_seed(args.seed)
    model = build_model(args.model, split.feature_shape, split.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=0.9)
    x, y = split.train.to_tensors()
    training = make_private(
        model,
        optimizer,
        nn.functional.cross_entropy,
        x,
        y,
        batch_size=args.batch_size,
        max_grad_norm=args.max_grad_norm,
        target_epsilon=args.target_epsilon,
        delta=DELTA,
        epochs=args.epochs,
        seed=args.seed,
    )
    generator = torch.Generator().manual_seed(args.seed + 1)
    steps = math.ceil(args.epochs / training.sample_rate)
    for batch in training.batches(steps=steps):
        if aug:
            noise = torch.randn(batch.inputs.shape, generator=generator)
            batch = dataclasses.replace(batch, inputs=batch.inputs + aug * noise)
        training.step(batch)
    return model, training.epsilon(DELTA).epsilon, training.noise_multiplier


def _train_baseline(split: Split, args: argparse.Namespace, aug: float) -> nn.Module:
    """Non-private SGD (shuffled minibatches of 256) with the same augmentation."""
    torch.manual_seed(args.seed)
    model = build_model(args.model, split.feature_shape, split.num_classes)
    return train_noise_augmented(
        model,
        split.train,
        sigma=aug,
        epochs=args.baseline_epochs,
        learning_rate=args.baseline_learning_rate,
        seed=args.seed,
    )


def _max_z(n: int, alpha: float) -> float:
    """Φ⁻¹ of the Clopper–Pearson lower bound when all ``n`` draws agree: ``alpha^(1/n)``."""
    from scipy import stats

    return float(stats.norm.ppf(alpha ** (1 / n)))


if __name__ == "__main__":
    main()
