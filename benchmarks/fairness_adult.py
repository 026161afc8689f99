"""Fairness under DP on UCI Adult: per-group accuracy, TPR and FPR gaps vs ε (issue #8).

An MLP (one hidden layer of 128) trained with DP-SGD (Poisson sampling, σ calibrated by the PLD
accountant to each target ε at δ = 1e-5) and without privacy (shuffled minibatches, ε = ∞), over
several seeds. For each model: overall test accuracy, per-group accuracy, TPR and FPR for ``sex``
and ``race`` (positive label: income > 50K), their max − min gaps, and the disparate impact of DP
against the non-private model of the same seed (Bagdasaryan et al. 2019). Prints one JSON object
and draws per-group accuracy against ε into a PNG.

    .venv/bin/python benchmarks/fairness_adult.py --data-dir ../shared/data/adult --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.evaluate import disparate_impact, fairness_report, group_counts
from deniable.train.trainer import train_baseline, train_private

COLUMNS = ("sex", "race")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 3.0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--baseline-epochs", type=float, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.2)
    parser.add_argument("--plot", type=Path, default=Path(__file__).with_name("fairness_adult.png"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    split = load_dataset("adult", args.data_dir)
    train_counts = {c: group_counts(split.train, c) for c in COLUMNS}
    rows: list[dict[str, object]] = []
    for seed in range(args.seeds):
        config = TrainConfig(
            dataset="adult",
            data_dir=args.data_dir,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            baseline_epochs=args.baseline_epochs,
            seed=seed,
            audit=False,
        )
        baseline, accuracy, _ = train_baseline(split, config)
        base_reports = {
            c: fairness_report(baseline, split.test, c, positive_label=1) for c in COLUMNS
        }
        rows.append(_row(None, None, seed, accuracy, base_reports, base_reports, train_counts))
        for target in args.epsilons:
            outcome = train_private(split, config.model_copy(update={"target_epsilon": target}))
            spent = outcome.training.epsilon(config.delta).epsilon
            reports = {
                c: fairness_report(outcome.model, split.test, c, positive_label=1) for c in COLUMNS
            }
            rows.append(
                _row(
                    target,
                    spent,
                    seed,
                    outcome.test_accuracy,
                    reports,
                    base_reports,
                    train_counts,
                    sigma=outcome.training.noise_multiplier,
                )
            )
    summary = _summary(rows, args.epsilons)
    _plot(summary, args.plot, args.seeds)
    out = {
        "benchmark": "fairness-adult",
        "model": args.model,
        "epochs": args.epochs,
        "baseline_epochs": args.baseline_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "delta": 1e-5,
        "seeds": args.seeds,
        "train_counts": train_counts,
        "test_counts": {c: group_counts(split.test, c) for c in COLUMNS},
        "summary": summary,
        "rows": rows,
        "plot": str(args.plot),
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps(out, indent=2))


def _row(
    target: float | None,
    spent: float | None,
    seed: int,
    accuracy: float,
    reports: dict,
    base_reports: dict,
    train_counts: dict,
    sigma: float | None = None,
) -> dict[str, object]:
    row: dict[str, object] = {
        "target_epsilon": target,
        "epsilon": spent,
        "noise_multiplier": sigma,
        "seed": seed,
        "accuracy": accuracy,
    }
    for column, report in reports.items():
        impact = disparate_impact(base_reports[column], report, train_counts[column])
        row[column] = {
            "groups": {
                g.group: {"accuracy": g.accuracy, "tpr": g.tpr, "fpr": g.fpr, "n": g.n}
                for g in report.groups
            },
            "accuracy_gap": report.gaps["accuracy"],
            "tpr_gap": report.gaps["tpr"],
            "fpr_gap": report.gaps["fpr"],
            "selection_rate_gap": report.gaps["selection_rate"],
            "equalized_odds_difference": report.equalized_odds_difference,
            "underrepresented": impact.underrepresented,
            "underrepresented_drop": impact.underrepresented_drop,
            "others_drop": impact.others_drop,
        }
    return row


def _mean_std(values: list[float]) -> dict[str, float]:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    std = statistics.stdev(clean) if len(clean) > 1 else 0.0
    return {"mean": statistics.fmean(clean), "std": std}


def _summary(rows: list[dict[str, object]], epsilons: list[float]) -> list[dict[str, object]]:
    out = []
    for target in [*epsilons, None]:
        chosen = [r for r in rows if r["target_epsilon"] == target]
        entry: dict[str, object] = {
            "target_epsilon": target,
            "epsilon": _mean_std([r["epsilon"] for r in chosen]) if target is not None else None,
            "accuracy": _mean_std([r["accuracy"] for r in chosen]),
        }
        for column in COLUMNS:
            parts = [r[column] for r in chosen]
            groups = parts[0]["groups"]
            entry[column] = {
                "groups": {
                    g: {
                        "n": groups[g]["n"],
                        **{
                            rate: _mean_std([p["groups"][g][rate] for p in parts])
                            for rate in ("accuracy", "tpr", "fpr")
                        },
                    }
                    for g in groups
                },
                **{
                    key: _mean_std([p[key] for p in parts])
                    for key in (
                        "accuracy_gap",
                        "tpr_gap",
                        "fpr_gap",
                        "selection_rate_gap",
                        "equalized_odds_difference",
                        "underrepresented_drop",
                        "others_drop",
                    )
                },
                "underrepresented": parts[0]["underrepresented"],
            }
        out.append(entry)
    return out


def _plot(summary: list[dict[str, object]], path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s['target_epsilon']:g}" if s["target_epsilon"] else "∞" for s in summary]
    xs = list(range(len(summary)))
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(11, 4.2), sharey=True)
    for ax, column in zip(axes, COLUMNS, strict=True):
        groups = summary[0][column]["groups"]
        for group in groups:
            means = [s[column]["groups"][group]["accuracy"]["mean"] for s in summary]
            stds = [s[column]["groups"][group]["accuracy"]["std"] for s in summary]
            ax.errorbar(
                xs,
                means,
                yerr=stds,
                marker="o",
                capsize=3,
                label=f"{group} (test n={groups[group]['n']})",
            )
        overall = [s["accuracy"]["mean"] for s in summary]
        ax.plot(xs, overall, "k--", label="overall")
        ax.set_xticks(xs, labels)
        ax.set_xlabel("ε (δ = 1e-5); ∞ = non-private")
        ax.set_title(f"Adult: test accuracy per {column}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel(f"accuracy (mean ± sd over {seeds} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
