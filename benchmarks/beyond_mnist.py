"""MNIST with an under-sampled class: disparate impact, generalisation, robustness vs ε (issue #8).

Bagdasaryan, Poursaeed & Shmatikov (2019) keep only part of MNIST's class 8 for training and show
that DP-SGD costs that class far more accuracy than the others. Here: class ``--label`` (8) keeps a
seeded ``--fraction`` (10 %) of its training images, the other classes and the test set are
untouched. One model (the repo's ``mlp``, 784-128-10) is trained with DP-SGD at each target ε
(Poisson sampling, σ calibrated by the PLD accountant, δ = 1e-5) and without privacy (shuffled
minibatches, ε = ∞). Per model:

- test accuracy overall and per class; class 8 against the mean of the other classes, and the
  disparate impact against the non-private model of the same seed (drop of class 8 vs the rest);
- the generalisation gap (train − test accuracy, test − train loss) and Yeom et al.'s threshold
  attack (loss ≤ mean training loss) with its membership advantage next to the bound
  ``(e^ε − 1 + 2δ)/(e^ε + 1)`` for the spent ε, against test images with the same class mix
  (class 8 under-sampled in the test set too, same fraction); the same on class 8 alone;
- FGSM and PGD (L∞, radius ``--radius`` on [0, 1] pixels; PGD ``--pgd-steps`` steps, one random
  start) accuracy on a seeded subset of ``--limit`` test images, overall and on its class-8 images;
- wall time of training and of the evaluation.

Prints one JSON object (``--out`` also writes it) and draws per-class accuracy vs ε (class 8
highlighted) into a PNG.

    .venv/bin/python benchmarks/beyond_mnist.py --data-dir ../shared/data/mnist --threads 1 \\
        --out benchmarks/results_beyond_mnist.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deniable.config import TrainConfig
from deniable.data import ArrayDataset, Split, load_dataset
from deniable.evaluate import (
    LinfBall,
    disparate_impact,
    fairness_report,
    fgsm,
    generalisation_report,
    group_counts,
    pgd,
    undersample_class,
    undersampled_split,
)
from deniable.train.trainer import train_baseline, train_private

DELTA = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--label", type=int, default=8, help="the under-sampled class")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of it kept")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=15)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--baseline-epochs", type=float, default=10)
    parser.add_argument("--baseline-learning-rate", type=float, default=0.05)
    parser.add_argument("--radius", type=float, default=0.1, help="L∞ attack budget")
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--limit", type=int, default=1000, help="test images attacked")
    parser.add_argument("--plot", type=Path, default=Path(__file__).with_name("beyond_mnist.png"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    full = load_dataset("mnist", args.data_dir)
    # The under-sampling is seeded once (seed 0): every seed trains on the same training set.
    split = undersampled_split(full, args.label, args.fraction, seed=0)
    train_counts = group_counts(split.train, None)
    chosen = np.sort(
        np.random.default_rng(0).choice(len(split.test), size=args.limit, replace=False)
    )
    attacked = split.test.subset(chosen)
    label = str(args.label)
    rows: list[dict[str, object]] = []
    for seed in range(args.seeds):
        config = TrainConfig(
            dataset="mnist",
            data_dir=args.data_dir,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            momentum=0.9,
            max_grad_norm=args.max_grad_norm,
            baseline_epochs=args.baseline_epochs,
            baseline_learning_rate=args.baseline_learning_rate,
            delta=DELTA,
            seed=seed,
            audit=False,
        )
        began = time.perf_counter()
        baseline, _, _ = train_baseline(split, config)
        trained = time.perf_counter() - began
        base_report = fairness_report(baseline, split.test)
        rows.append(
            _row(args, split, attacked, baseline, None, None, None, seed, trained, began)
            | _classes(base_report, base_report, train_counts, label)
        )
        _progress(rows[-1], start)
        for target in args.epsilons:
            began = time.perf_counter()
            outcome = train_private(split, config.model_copy(update={"target_epsilon": target}))
            trained = time.perf_counter() - began
            spent = outcome.training.epsilon(DELTA).epsilon
            model = outcome.model
            rows.append(
                _row(
                    args,
                    split,
                    attacked,
                    model,
                    target,
                    spent,
                    outcome.training.noise_multiplier,
                    seed,
                    trained,
                    began,
                )
                | _classes(fairness_report(model, split.test), base_report, train_counts, label)
            )
            _progress(rows[-1], start)
    summary = _summary(rows, args.epsilons)
    _plot(summary, args.plot, args)
    out = {
        "benchmark": "beyond-mnist-undersampled",
        "model": args.model,
        "undersampled_class": args.label,
        "fraction": args.fraction,
        "train_counts": train_counts,
        "test_counts": group_counts(split.test, None),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "momentum": 0.9,
        "max_grad_norm": args.max_grad_norm,
        "baseline_epochs": args.baseline_epochs,
        "baseline_learning_rate": args.baseline_learning_rate,
        "delta": DELTA,
        "attack": {
            "norm": "linf",
            "radius": args.radius,
            "pgd_steps": args.pgd_steps,
            "pgd_random_starts": 1,
            "bounds": [0.0, 1.0],
            "examples": args.limit,
            "class_examples": int(np.count_nonzero(attacked.labels == args.label)),
        },
        "seeds": args.seeds,
        "summary": summary,
        "rows": rows,
        "plot": _shown(args.plot),
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


def _row(
    args: argparse.Namespace,
    split: Split,
    attacked: ArrayDataset,
    model: nn.Module,
    target: float | None,
    spent: float | None,
    sigma: float | None,
    seed: int,
    trained: float,
    began: float,
) -> dict[str, object]:
    """Generalisation and robustness of one model (fairness is added by :func:`_classes`)."""
    model.eval()
    # Non-members with the members' class mix: the test set with the same class under-sampled.
    # Against the full test set, the rare class (badly fit, ~10 % of test but ~1 % of train) would
    # raise the non-members' losses and pass a distribution shift off as membership.
    matched = undersample_class(split.test, args.label, args.fraction, seed=0)
    gen = generalisation_report(model, split.train, matched, epsilon=spent, delta=DELTA)
    member = split.train.subset(split.train.labels == args.label)
    other = split.test.subset(split.test.labels == args.label)
    gen_class = generalisation_report(model, member, other, epsilon=spent, delta=DELTA)
    ball = LinfBall(args.radius)
    attacks = {
        "fgsm": functools.partial(fgsm, ball=ball, bounds=(0.0, 1.0)),
        "pgd": functools.partial(
            pgd, ball=ball, steps=args.pgd_steps, random_starts=1, bounds=(0.0, 1.0), seed=seed
        ),
    }
    x, y = attacked.to_tensors()
    in_class = y == args.label
    robust: dict[str, object] = {}
    for name, attack in attacks.items():
        correct = _correct_after(model, x, y, attack)
        robust[name] = {
            "accuracy": float(correct.float().mean()),
            "class_accuracy": float(correct[in_class].float().mean()),
            "others_accuracy": float(correct[~in_class].float().mean()),
        }
    with torch.no_grad():
        clean = model(x).argmax(dim=1) == y
    robust["clean"] = {
        "accuracy": float(clean.float().mean()),
        "class_accuracy": float(clean[in_class].float().mean()),
        "others_accuracy": float(clean[~in_class].float().mean()),
    }
    return {
        "target_epsilon": target,
        "epsilon": spent,
        "noise_multiplier": sigma,
        "seed": seed,
        "generalisation": gen.to_dict(),
        "class_generalisation": gen_class.to_dict(),
        "robustness": robust,
        "train_seconds": round(trained, 1),
        "seconds": round(time.perf_counter() - began, 1),
    }


def _correct_after(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack) -> torch.Tensor:
    """Whether each example is still classified correctly after ``attack`` (batches of 250)."""
    out = []
    for begin in range(0, len(y), 250):
        xb, yb = x[begin : begin + 250], y[begin : begin + 250]
        adv = attack(model, xb, yb)
        with torch.no_grad():
            out.append(model(adv).argmax(dim=1) == yb)
    return torch.cat(out)


def _classes(report, base_report, train_counts: dict[str, int], label: str) -> dict[str, object]:
    """Per-class accuracy, class ``label`` vs the mean of the others, and the drop vs baseline."""
    per_class = {g.group: g.accuracy for g in report.groups}
    others = [v for k, v in per_class.items() if k != label]
    impact = disparate_impact(base_report, report, train_counts)
    return {
        "accuracy": report.overall_accuracy,
        "class_accuracy": per_class,
        "undersampled_accuracy": per_class[label],
        "others_mean_accuracy": statistics.fmean(others),
        "undersampled_gap": statistics.fmean(others) - per_class[label],
        "undersampled_drop": impact.underrepresented_drop,
        "others_drop": impact.others_drop,
        "size_drop_correlation": impact.size_drop_correlation,
    }


def _progress(row: dict[str, object], start: float) -> None:
    brief = {
        k: row[k]
        for k in ("target_epsilon", "seed", "accuracy", "undersampled_accuracy", "train_seconds")
    }
    brief["elapsed"] = round(time.perf_counter() - start, 1)
    print(json.dumps(brief), file=sys.stderr, flush=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _mean_std(values: list[float | None]) -> dict[str, float] | None:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return None
    std = statistics.stdev(clean) if len(clean) > 1 else 0.0
    return {"mean": statistics.fmean(clean), "std": std}


def _summary(rows: list[dict[str, object]], epsilons: list[float]) -> list[dict[str, object]]:
    out = []
    for target in [*epsilons, None]:
        chosen = [r for r in rows if r["target_epsilon"] == target]
        gen = [r["generalisation"] for r in chosen]
        cls = [r["class_generalisation"] for r in chosen]
        classes = list(chosen[0]["class_accuracy"])
        entry: dict[str, object] = {
            "target_epsilon": target,
            "epsilon": _mean_std([r["epsilon"] for r in chosen]),
            "noise_multiplier": _mean_std([r["noise_multiplier"] for r in chosen]),
            "advantage_bound": gen[0]["advantage_bound"],
            **{
                key: _mean_std([r[key] for r in chosen])
                for key in (
                    "accuracy",
                    "undersampled_accuracy",
                    "others_mean_accuracy",
                    "undersampled_gap",
                    "undersampled_drop",
                    "others_drop",
                    "train_seconds",
                    "seconds",
                )
            },
            "class_accuracy": {
                c: _mean_std([r["class_accuracy"][c] for r in chosen]) for c in classes
            },
            "accuracy_gap": _mean_std([g["accuracy_gap"] for g in gen]),
            "loss_gap": _mean_std([g["loss_gap"] for g in gen]),
            "advantage": _mean_std([g["membership_attack"]["advantage"] for g in gen]),
            "advantage_lower": _mean_std([g["membership_attack"]["advantage_lower"] for g in gen]),
            "within_bound": [g["within_bound"] for g in gen],
            "class_accuracy_gap": _mean_std([g["accuracy_gap"] for g in cls]),
            "class_advantage": _mean_std([g["membership_attack"]["advantage"] for g in cls]),
            **{
                f"{attack}_{part}": _mean_std([r["robustness"][attack][part] for r in chosen])
                for attack in ("clean", "fgsm", "pgd")
                for part in ("accuracy", "class_accuracy", "others_accuracy")
            },
        }
        out.append(entry)
    return out


def _plot(summary: list[dict[str, object]], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s['target_epsilon']:g}" if s["target_epsilon"] else "∞" for s in summary]
    xs = list(range(len(summary)))
    label = str(args.label)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in summary[0]["class_accuracy"]:
        means = [s["class_accuracy"][c]["mean"] for s in summary]
        stds = [s["class_accuracy"][c]["std"] for s in summary]
        if c == label:
            left.errorbar(
                xs,
                means,
                yerr=stds,
                color="tab:red",
                marker="o",
                lw=2.5,
                capsize=3,
                zorder=3,
                label=f"class {c} ({args.fraction:.0%} of its training images)",
            )
        else:
            left.plot(xs, means, color="0.6", lw=1, marker=".", zorder=1)
            left.annotate(c, (xs[0], means[0]), fontsize=7, color="0.4", ha="right")
    left.plot(
        xs, [s["others_mean_accuracy"]["mean"] for s in summary], "k--", label="mean of others"
    )
    left.plot([], [], color="0.6", lw=1, label="other classes")
    left.set_title(f"MNIST, class {label} under-sampled: test accuracy per class")
    left.set_ylabel(f"accuracy (mean ± sd over {args.seeds} seeds)")
    series = {
        f"clean ({args.limit} test images)": "clean_accuracy",
        f"FGSM L∞ {args.radius:g}": "fgsm_accuracy",
        f"PGD-{args.pgd_steps} L∞ {args.radius:g}": "pgd_accuracy",
        "membership advantage": "advantage",
    }
    for name, key in series.items():
        right.plot(xs, [s[key]["mean"] for s in summary], marker="o", label=name)
    right.set_title("robust accuracy and threshold-attack advantage")
    for ax in (left, right):
        ax.set_xticks(xs, labels)
        ax.set_xlabel("ε (δ = 1e-5); ∞ = non-private")
        ax.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    right.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
