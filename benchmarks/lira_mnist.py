"""LiRA on MNIST: how much a small CNN leaks without DP and with DP-SGD at ε = 8 and ε = 3.

The standard LiRA design of Carlini, Chien, Nasr, Song, Terzis & Tramèr (2022), "Membership
inference attacks from first principles": a population of N MNIST training images (a seeded
random subset) and M models, each trained on a random half of it (one membership matrix, drawn
once, balanced: every image is in exactly ⌊M/2⌋ models). Every model in turn is the target and
the other M − 1 are its shadows (leave-one-out, as in the paper); the scores of all M targets on
all N images are pooled into one ROC, which gives M·N/2 non-member points, enough to read the TPR
at 0.1 % FPR (a single target has only about N/2).

The model is the tanh CNN of Papernot et al. (2021) (``papernot-cnn``, the model of
``benchmarks/mnist.py``); the GroupNorm ``cnn`` also works (``--model cnn``) but trains about half
as fast on one CPU thread, too slow for 3 × M models in the time budget.

The same is done for three training algorithms; the shadows are always trained like the target:

- non-private SGD, long enough to fit the members perfectly (it overfits: that is the point);
- DP-SGD (Poisson sampling, clipping, Gaussian noise; :class:`ShadowDP`) at ε = 8 and ε = 3,
  δ = 1e-5, σ calibrated by the PLD accountant for the model with the fewest members (the largest
  sample rate), so that every one of the M models spends at most the target ε.

Attacks (scores on the pooled (target, image) pairs): LiRA online and offline
(:mod:`deniable.audit.mia_lira`, a global variance per query below 64 shadows) on the scaled
confidence φ, and the LOSS attack (−cross-entropy of the target, no shadows) for comparison.
Reported: AUC, TPR at 1 % and 0.1 % FPR, the membership advantage, the test accuracy of model 0
and of all models, wall time. Prints one JSON document; ``--out`` also writes it to a file.

    .venv/bin/python benchmarks/lira_mnist.py --out benchmarks/results_lira_mnist.json
    .venv/bin/python benchmarks/lira_mnist.py --quick      # a dry run in well under a minute
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event, noise_multiplier
from deniable.audit.metrics import attack_metrics
from deniable.audit.mia_lira import lira_offline, lira_online
from deniable.audit.shadows import ShadowConfig, ShadowDP, draw_membership, train_shadows
from deniable.audit.signals import image_queries
from deniable.data import load_dataset
from deniable.data.dataset import ArrayDataset

FPR_LEVELS = (0.01, 0.001, 0.0)
ATTACKS = ("lira_online", "lira_offline", "loss")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--model", default="papernot-cnn", help="a deniable.models name")
    parser.add_argument("--population", type=int, default=2500, help="N, images in the pool")
    parser.add_argument(
        "--models", type=int, default=16, help="M = target + shadows (leave-one-out)"
    )
    parser.add_argument("--epochs", type=int, default=40, help="non-private epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="non-private batch size")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[8.0, 3.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--dp-epochs", type=int, default=30)
    parser.add_argument("--dp-batch-size", type=int, default=128, help="expected batch size")
    parser.add_argument("--dp-learning-rate", type=float, default=0.3)
    parser.add_argument("--dp-momentum", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument(
        "--max-shift", type=int, default=0, help="LiRA queries: shifts up to this (0: identity)"
    )
    parser.add_argument("--test-size", type=int, default=10_000, help="MNIST test images used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="reuse trained models")
    parser.add_argument("--quick", action="store_true", help="tiny dry run (timing, plumbing)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.population, args.models, args.epochs, args.dp_epochs = 300, 4, 2, 2
        args.test_size = min(args.test_size, 500)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    split = load_dataset("mnist", args.data_dir)
    rng = np.random.default_rng([args.seed, 7])
    chosen = np.sort(rng.choice(len(split.train), size=args.population, replace=False))
    population = split.train.subset(chosen)
    test = split.test.subset(np.arange(min(args.test_size, len(split.test))))
    queries = image_queries(args.max_shift, flip=False)

    runs: list[dict[str, Any]] = []
    algorithms: list[float | None] = [None, *args.epsilons]
    for eps in algorithms:
        runs.append(run_algorithm(eps, population, test, queries, args))
        log(f"{runs[-1]['algorithm']}: done in {runs[-1]['wall_seconds']:.0f} s")

    result = {
        "benchmark": "lira-mnist",
        "dataset": "mnist",
        "model": args.model,
        "population": args.population,
        "population_indices": "sorted seeded random subset of the MNIST training set",
        "models": args.models,
        "shadows_per_target": args.models - 1,
        "membership": f"balanced: each image in exactly {args.models // 2} of the models",
        "evaluation": (
            "leave-one-out: each model is the target once, the others its shadows; scores of "
            "all targets pooled into one ROC"
        ),
        "queries": len(queries),
        "lira_variance": "global per query (fewer than 64 shadows)",
        "delta": args.delta,
        "test_size": len(test),
        "seed": args.seed,
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "wall_seconds": time.perf_counter() - start,
        "command": " ".join(["benchmarks/lira_mnist.py", *sys.argv[1:]]),
        "runs": runs,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


def run_algorithm(
    epsilon: float | None,
    population: ArrayDataset,
    test: ArrayDataset,
    queries: list[Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train the M models with one algorithm, attack every one of them, pool the scores."""
    start = time.perf_counter()
    private = epsilon is not None
    config = ShadowConfig(
        model=args.model,
        n_shadows=args.models,
        epochs=args.dp_epochs if private else args.epochs,
        batch_size=args.dp_batch_size if private else args.batch_size,
        learning_rate=args.dp_learning_rate if private else args.learning_rate,
        momentum=args.dp_momentum if private else args.momentum,
        seed=args.seed,
        balanced=True,
    )
    row: dict[str, Any] = {
        "algorithm": "non-private" if epsilon is None else f"dp-sgd eps={epsilon:g}"
    }
    sizes = draw_membership(config, len(population)).sum(axis=1)
    if epsilon is not None:
        privacy = calibrate(epsilon, args.delta, config, sizes)
        config = ShadowConfig(
            **{**asdict(config), "dp": ShadowDP(privacy["noise_multiplier"], args.max_grad_norm)}
        )
        row["privacy"] = privacy
    row["training"] = {
        "optimizer": "sgd",
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "max_grad_norm": args.max_grad_norm if private else None,
        "members_per_model": {
            "min": int(sizes.min()),
            "max": int(sizes.max()),
            "mean": float(sizes.mean()),
        },
    }

    def progress(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            log(f"{row['algorithm']}: step {done}/{total} ({time.perf_counter() - start:.0f} s)")

    models = train_shadows(population, config, cache_dir=args.cache_dir, progress=progress)
    trained = time.perf_counter()
    x, y = population.to_tensors()
    signals = models.signals(x, y, augmentations=queries)
    phi = signals.scaled_confidence  # (M, N, Q)
    loss = signals.loss[:, :, 0]  # identity query
    membership = models.membership
    train_correct = signals.correct[:, :, 0]

    xt, yt = test.to_tensors()
    test_correct = models.logits(xt)[:, :, 0].argmax(-1).numpy() == yt.numpy()[None]
    test_accuracy = test_correct.mean(axis=1)

    scores: dict[str, list[np.ndarray]] = {name: [] for name in ATTACKS}
    labels: list[np.ndarray] = []
    per_target_auc: dict[str, list[float]] = {name: [] for name in ATTACKS}
    for t in range(args.models):
        others = np.arange(args.models) != t
        attack = {
            "lira_online": lira_online(phi[t], phi[others], membership[others]).scores,
            "lira_offline": lira_offline(phi[t], phi[others], membership[others]).scores,
            "loss": -loss[t],
        }
        labels.append(membership[t])
        for name, s in attack.items():
            scores[name].append(s)
            per_target_auc[name].append(attack_metrics(s, membership[t], fpr_levels=()).auc)
    is_member = np.concatenate(labels)
    attacks = {}
    for name in ATTACKS:
        pooled = attack_metrics(np.concatenate(scores[name]), is_member, fpr_levels=FPR_LEVELS)
        target0 = attack_metrics(scores[name][0], labels[0], fpr_levels=FPR_LEVELS)
        aucs = np.array(per_target_auc[name])
        attacks[name] = {
            "pooled": pooled.to_dict(),
            "target_0": target0.to_dict(),
            "auc_per_target": {
                "mean": float(aucs.mean()),
                "min": float(aucs.min()),
                "max": float(aucs.max()),
            },
        }
    row.update(
        {
            "test_accuracy_target_0": float(test_accuracy[0]),
            "test_accuracy_all_models": {
                "mean": float(test_accuracy.mean()),
                "min": float(test_accuracy.min()),
                "max": float(test_accuracy.max()),
            },
            "train_accuracy_members": float(train_correct[membership].mean()),
            "mean_phi_members": float(phi[..., 0][membership].mean()),
            "mean_phi_nonmembers": float(phi[..., 0][~membership].mean()),
            "attacks": attacks,
            "train_seconds": trained - start,
            "from_cache": models.from_cache,
            "wall_seconds": time.perf_counter() - start,
        }
    )
    return row


def calibrate(
    epsilon: float, delta: float, config: ShadowConfig, sizes: np.ndarray
) -> dict[str, Any]:
    """σ for the model with the fewest members (the largest q = B/n, the largest ε), then the ε
    every model actually spends with that σ (its own q and ⌈epochs/q⌉ steps, PLD)."""

    def plan(n: int) -> tuple[float, int]:
        q = min(config.batch_size, n) / n
        return q, math.ceil(config.epochs / q)

    q, steps = plan(int(sizes.min()))
    cal = noise_multiplier(epsilon, delta, q, steps)
    spent = [
        accounting.epsilon(dpsgd_event(cal.noise_multiplier, *plan(int(n))), delta).epsilon
        for n in sorted(set(sizes.tolist()))
    ]
    return {
        "target_epsilon": epsilon,
        "noise_multiplier": cal.noise_multiplier,
        "sample_rate_max": q,
        "steps_at_max_rate": steps,
        "epsilon_max_over_models": max(spent),
        "epsilon_min_over_models": min(spent),
        "accountant": cal.accountant,
        "relation": cal.relation,
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
