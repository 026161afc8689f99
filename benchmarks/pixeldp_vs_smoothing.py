"""PixelDP vs randomized smoothing: certified L2 accuracy on MNIST (issue #8).

Two ways to turn Gaussian noise into an L2 certificate, on the same 784-128-10 MLP shape, both
non-private:

- **PixelDP** (Lécuyer et al. 2019): ``PixelDPMLP``, a first linear layer with spectral norm ≤ 1
  (L2 sensitivity Δ = 1), then N(0, σ²) noise on its 128 outputs with σ = L·√(2 ln(1.25/δ))/ε
  for the construction (L, ε = 1, δ = 0.05), then ReLU and the output layer. Trained with the
  noise layer active. Certified by ``pixeldp_certify``: ``--draws`` noisy passes, one-sided
  Clopper–Pearson bounds at α/K each on the expected one-hot scores, Proposition 1, and the
  largest radius over the authors' δ' grid (ε' ≤ 1).
- **Randomized smoothing** (Cohen et al. 2019): a plain MLP trained with Gaussian augmentation
  σ, smoothed with the same σ in input space; ``certify_dataset`` with ``n0`` selection and ``n``
  estimation draws, Clopper–Pearson at 1 − α.

Comparable noise: smoothing σ in input space, pushed through a layer of spectral norm ≤ 1, is
noise of covariance ⪯ σ²I on the hidden units, so PixelDP with σ_PixelDP ≈ σ_smoothing (L = 0.1
↔ σ = 0.25, L = 0.3 ↔ σ = 0.75) puts at least as much noise where PixelDP puts it. Both
certificates hold for each image with probability ≥ 1 − ``--alpha`` over the draws. Certified
accuracy at radius r: certified correct with radius ≥ r (r = 0: with a positive radius —
smoothing did not abstain, PixelDP's Proposition 1 held for some ε' > 0). Same seeded subset of
``--limit`` test images as ``certified_mnist.py`` (its DP-SGD row is not rerun here).
Prints one JSON object and writes it to ``--out``.

    .venv/bin/python benchmarks/pixeldp_vs_smoothing.py --data-dir ../shared/data/mnist \\
        --out benchmarks/results_pixeldp_vs_smoothing.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from deniable.data import ArrayDataset, Split, load_dataset
from deniable.evaluate import (
    PixelDPConstruction,
    PixelDPMLP,
    SmoothedClassifier,
    certify_dataset,
    pixeldp_certified_accuracy,
    pixeldp_certify,
    pixeldp_radius,
    train_noise_augmented,
)
from deniable.evaluate.pixeldp import DEFAULT_DELTAS
from deniable.models import build_model
from deniable.train.trainer import accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--attack-bounds", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--pixeldp-epsilon", type=float, default=1.0)
    parser.add_argument("--pixeldp-delta", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=10_000, help="PixelDP noisy passes")
    parser.add_argument(
        "--extra-draws", type=int, default=300, help="also certify PixelDP with this many (0: no)"
    )
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.75])
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.001, help="failure probability, both")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5])
    parser.add_argument("--limit", type=int, default=500, help="test images to certify")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    split = load_dataset("mnist", args.data_dir)
    chosen = np.sort(
        np.random.default_rng(args.seed).choice(len(split.test), size=args.limit, replace=False)
    )
    subset = split.test.subset(chosen)
    radii = tuple(args.radii)
    rows = []
    for bound in args.attack_bounds:
        construction = PixelDPConstruction(bound, args.pixeldp_epsilon, args.pixeldp_delta)
        began = time.perf_counter()
        torch.manual_seed(args.seed)
        model = PixelDPMLP(int(np.prod(split.feature_shape)), split.num_classes, construction)
        _train(model, split, args, augmentation=0.0)
        trained = time.perf_counter() - began
        torch.manual_seed(args.seed)
        test_acc = accuracy(model, split.test)  # one noise draw per image: the layer is always on
        for draws in [args.draws] + ([args.extra_draws] if args.extra_draws else []):
            row = _pixeldp_row(model, construction, subset, args, draws, radii)
            row.update(test_accuracy=test_acc, train_seconds=round(trained, 1))
            rows.append(row)
            print(json.dumps(row), flush=True)
    for sigma in args.sigmas:
        began = time.perf_counter()
        torch.manual_seed(args.seed)
        model = build_model("mlp", split.feature_shape, split.num_classes)
        _train(model, split, args, augmentation=sigma)
        trained = time.perf_counter() - began
        smoothed = SmoothedClassifier(model, split.num_classes, sigma, batch_size=2000)
        report = certify_dataset(
            smoothed, subset, n0=args.n0, n=args.n, alpha=args.alpha, seed=args.seed
        )
        summary = report.to_dict(radii=radii)
        row = {
            "method": "smoothing",
            "sigma": sigma,
            "n0": args.n0,
            "n": args.n,
            "alpha": args.alpha,
            "test_accuracy": accuracy(model, split.test),
            "subset_accuracy": accuracy(model, subset),
            "certified_accuracy": summary["certified_accuracy"],
            "abstain_rate": summary["abstain_rate"],
            "median_radius_correct": summary["median_radius_correct"],
            "max_certifiable_radius": sigma * float(stats.norm.ppf(args.alpha ** (1 / args.n))),
            "train_seconds": round(trained, 1),
            "certify_seconds": round(time.perf_counter() - began - trained, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "benchmark": "pixeldp-vs-smoothing-mnist",
        "model": "mlp 784-128-10 (PixelDP: spectral-norm first layer, noise on its outputs)",
        "private": False,
        "pixeldp_epsilon": args.pixeldp_epsilon,
        "pixeldp_delta": args.pixeldp_delta,
        "failure_probability": args.alpha,
        "epochs": args.epochs,
        "batch_size": 256,
        "learning_rate": args.learning_rate,
        "certified_examples": args.limit,
        "radii": list(radii),
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


def _pixeldp_row(
    model: nn.Module,
    construction: PixelDPConstruction,
    subset: ArrayDataset,
    args: argparse.Namespace,
    draws: int,
    radii: tuple[float, ...],
) -> dict[str, object]:
    """Certify ``subset`` with ``draws`` passes: the library's summary at the construction bound,
    and per-image certificates (same seeds, so the same votes) for the radius curve."""
    began = time.perf_counter()
    summary = pixeldp_certified_accuracy(
        model, subset, draws=draws, alpha=args.alpha, seed=args.seed
    )
    x, y = subset.to_tensors()
    certs = [
        pixeldp_certify(model, x[i], draws=draws, alpha=args.alpha, seed=args.seed + i)
        for i in range(len(y))
    ]
    correct = [c.prediction == int(y[i]) for i, c in enumerate(certs)]
    robust = sum(ok and c.robust for ok, c in zip(correct, certs, strict=True)) / len(certs)
    if abs(robust - summary["certified_accuracy"]) > 1e-12:
        raise RuntimeError("per-image certificates disagree with pixeldp_certified_accuracy")
    good = [c.radius.radius for ok, c in zip(correct, certs, strict=True) if ok]
    curve = {
        f"{r:g}": sum(ok and _at(c.radius.radius, r) for ok, c in zip(correct, certs, strict=True))
        / len(certs)
        for r in radii
    }
    k = subset.num_classes
    best = pixeldp_radius(
        (args.alpha / k) ** (1 / draws),
        1 - (args.alpha / k) ** (1 / draws),
        model.noise.sigma,
        deltas=tuple(sorted({*DEFAULT_DELTAS, construction.delta})),
    )
    return {
        "method": "pixeldp",
        "attack_bound": construction.attack_bound,
        "epsilon": construction.epsilon,
        "delta": construction.delta,
        "sigma": model.noise.sigma,
        "first_layer_sensitivity": model.first.sensitivity(),
        "draws": draws,
        "alpha": args.alpha,
        "prediction_accuracy": summary["accuracy"],
        "certified_accuracy_at_attack_bound": summary["certified_accuracy"],
        "robust_rate_at_attack_bound": summary["robust_rate"],
        "certified_accuracy": curve,
        "no_certificate_rate": sum(c.radius.radius <= 0 for c in certs) / len(certs),
        "median_radius_correct": float(np.median(good)) if good else 0.0,
        "max_certifiable_radius": best.radius,
        # both the library summary and the per-image pass: certify time is for one of the two
        "certify_seconds": round((time.perf_counter() - began) / 2, 1),
    }


def _at(radius: float, r: float) -> bool:
    """Certified at r: radius ≥ r, and a positive radius at r = 0."""
    return radius > 0 if r == 0 else radius >= r


def _train(model: nn.Module, split: Split, args: argparse.Namespace, augmentation: float) -> None:
    """Non-private SGD, momentum 0.9, shuffled minibatches of 256, Gaussian input augmentation."""
    train_noise_augmented(
        model,
        split.train,
        sigma=augmentation,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
