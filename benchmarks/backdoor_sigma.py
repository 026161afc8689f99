"""Backdoor success vs DP-SGD noise and the number of poisoned examples k (issue #8).

BadNets-style poisoning (Gu et al. 2017): ``k`` triggered copies of non-target training examples
(a 2×2 patch of value 1 in the bottom-right corner), labelled ``target``, are added to the
training set. For each noise multiplier σ (σ = 0: the non-private baseline, no clipping, no
noise) a model is trained on the clean and on each poisoned training set (the clean model is
shared by all k); success is the fraction of non-target test examples predicted ``target`` once
the trigger is stamped on them. Beside it: the poisoned run's ε (PLD, δ = 1e-5), group privacy
for k added examples (ε_k = kε, δ_k = k e^{(k−1)ε} δ; Dwork & Roth 2014 Thm 2.2) and the bound
it puts on the expected success, ``min(1, e^{ε_k}·clean + δ_k)``: with the measured clean rate
(``success_bound``) and with a 95 % Clopper–Pearson upper bound on the expected clean rate, pooled
over seeds (``success_bound_upper``; a clean rate of 0 on a few models does not make the expected
rate 0). σ = 0.01 is a clipping-only control (noise negligible, ε huge, from the RDP
accountant: the PLD grid cannot hold it). Several seeds (training
and poison choice). Prints one JSON object.

    .venv/bin/python benchmarks/backdoor_sigma.py --threads 1
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
from torch import nn

from deniable.audit.bounds_binomial import cp_upper
from deniable.config import TrainConfig
from deniable.data import Split, load_dataset
from deniable.evaluate import PatchTrigger, backdoor, backdoor_success_rate, group_privacy
from deniable.train.trainer import train_baseline, train_private


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.01, 0.5, 1.0, 2.0, 8.0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=int, default=0)
    parser.add_argument("--patch", type=int, default=2, help="trigger side in pixels")
    parser.add_argument("--epochs", type=float, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    split = load_dataset(args.dataset, args.data_dir)
    trigger = PatchTrigger(args.patch, 1.0)
    eligible = int((split.test.labels != args.target).sum())
    rows: list[dict[str, object]] = []
    for seed in range(args.seeds):
        config = TrainConfig(
            dataset=args.dataset,
            data_dir=args.data_dir,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            delta=args.delta,
            noise_multiplier=1.0,
            target_epsilon=None,
            seed=seed,
            audit=False,
        )
        for sigma in args.sigmas:
            clean_model, clean_acc, _ = _train(split, config, sigma)
            clean_success = backdoor_success_rate(clean_model, split.test, args.target, trigger)
            for k in args.ks:
                poisoned = backdoor(split.train, k, args.target, trigger, seed=seed)
                attacked = Split(train=poisoned.data, test=split.test)
                model, acc, epsilon = _train(attacked, config, sigma)
                success = backdoor_success_rate(model, split.test, args.target, trigger)
                group = group_privacy(epsilon, args.delta if sigma else 0.0, poisoned.group_size())
                rows.append(
                    {
                        "seed": seed,
                        "noise_multiplier": sigma,
                        "k": k,
                        "epsilon": _finite(epsilon),
                        "epsilon_k": _finite(group.epsilon_k),
                        "delta_k": _finite(group.delta_k),
                        "clean_accuracy": clean_acc,
                        "poisoned_accuracy": acc,
                        "clean_success": clean_success,
                        "poisoned_success": success,
                        "success_bound": _bound(group.epsilon_k, group.delta_k, clean_success),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    out = {
        "benchmark": "backdoor-vs-sigma",
        "dataset": args.dataset,
        "model": args.model,
        "train_size": len(split.train),
        "target": args.target,
        "trigger": f"{args.patch}x{args.patch} patch = 1.0, bottom-right",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "delta": args.delta,
        "seeds": args.seeds,
        "attacked_test_examples": eligible,
        "summary": _summary(rows, args.sigmas, args.ks, eligible),
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps(out, indent=2))


def _train(split: Split, config: TrainConfig, sigma: float) -> tuple[nn.Module, float, float]:
    """(model, test accuracy, ε): DP-SGD at noise ``sigma``, or the baseline for σ = 0."""
    if sigma == 0:
        model, accuracy, _ = train_baseline(split, config)
        return model, accuracy, math.inf
    # the PLD grid cannot hold the privacy loss of a nearly noiseless step: RDP for σ < 0.3
    accountant = "rdp" if sigma < 0.3 else None
    update = {"noise_multiplier": sigma, "accountant": accountant}
    run = train_private(split, config.model_copy(update=update))
    spent = run.training.epsilon(config.delta, accountant).epsilon
    return run.model, run.test_accuracy, spent


def _bound(epsilon_k: float, delta_k: float, clean: float) -> float:
    """``min(1, e^{ε_k}·clean + δ_k)`` without overflowing for large ε_k."""
    if clean == 0:
        return min(1.0, delta_k)
    if epsilon_k > 700:
        return 1.0
    return min(1.0, math.exp(epsilon_k) * clean + delta_k)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _summary(
    rows: list[dict[str, object]], sigmas: list[float], ks: list[int], eligible: int
) -> list[dict]:
    out = []
    for sigma in sigmas:
        level = [r for r in rows if r["noise_multiplier"] == sigma]
        # one clean model per seed (shared by every k): pool their successes
        clean = {r["seed"]: r["clean_success"] for r in level}
        hits = sum(round(v * eligible) for v in clean.values())
        clean_upper = float(cp_upper(hits, eligible * len(clean), 0.05))
        for k in ks:
            chosen = [r for r in level if r["k"] == k]
            entry: dict[str, object] = {"noise_multiplier": sigma, "k": k}
            for key in (
                "epsilon",
                "clean_accuracy",
                "poisoned_accuracy",
                "clean_success",
                "poisoned_success",
                "success_bound",
            ):
                values = [r[key] for r in chosen if r[key] is not None]
                entry[key] = statistics.fmean(values) if values else None
                if key == "poisoned_success":
                    entry["poisoned_success_per_seed"] = values
            eps_k = [r["epsilon_k"] for r in chosen]
            delta_k = [r["delta_k"] for r in chosen]
            entry["epsilon_k"] = statistics.fmean(eps_k) if None not in eps_k else None
            entry["clean_success_upper"] = clean_upper
            entry["success_bound_upper"] = max(
                1.0 if e is None or d is None else _bound(e, d, clean_upper)
                for e, d in zip(eps_k, delta_k, strict=True)
            )
            out.append(entry)
    return out


if __name__ == "__main__":
    main()
