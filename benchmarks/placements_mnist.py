"""MNIST test accuracy vs ε for four noise placements (issue #7): one table.

DP-SGD (noise on gradients), PATE (noise on teacher votes; a student on a public split), label DP
(randomized response with a prior on the labels) and input perturbation (noise on each record) at
each target ε (default 1, 3, 8; δ = 1e-5), plus a non-private row. The guarantees differ and are
not interchangeable: DP-SGD and PATE give central DP of one training example, label DP protects
only the labels (the features are treated as public), input perturbation gives local DP of each
record (features and label), a much stronger model in which every record is noised on its own.

Every row is evaluated on the same held-out examples: the second half of the MNIST test split
(the first half is PATE's public, unlabelled data; :func:`deniable.methods.public_split`). Every
row trains the same architecture (``--model``, default the Papernot et al. 2021 tanh CNN).

Cost savers (one CPU thread): PATE's teachers do not depend on ε, so they are trained once and
their votes on the public data computed once; only the noisy aggregation and the student are
redone per ε. DP-SGD uses the Papernot et al. recipe of benchmarks/mnist.py but fewer epochs
(``--dpsgd-epochs``). The other fits are short non-private Adam runs (``--fit-epochs``).

PATE: GNMax with σ set a priori to T/4 for T teachers (a clear plurality then rarely flips), and
as many queries Q (≤ the public half) as the data-independent ε allows at that σ; σ is then
calibrated by the PLD accountant for exactly Q queries. Confident-GNMax (Papernot et al. 2018,
Alg. 1; threshold 0.8 T and σ₁ = 0.6 T, their MNIST values for T = 250) runs on the same Q
queries, with σ₂ calibrated so that the data-independent event (every threshold check and up to
Q answers) spends the target. The published ε is the data-independent one; the data-dependent
ε (RDP, on the actual votes) is printed for information only: it is a function of the private
data and is NOT publishable as is.

    .venv/bin/python benchmarks/placements_mnist.py --data-dir ../shared/data/mnist \
        --out benchmarks/results_placements_mnist.json

Prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deniable.accounting.calibrate import smallest_noise
from deniable.config import TrainConfig
from deniable.data import Split, load_dataset
from deniable.errors import DeniableError
from deniable.events import GaussianEvent, SelfComposedEvent
from deniable.mechanisms import RandomSource
from deniable.methods import public_split, train_method
from deniable.placements.fit import Fit, fit_classifier
from deniable.placements.pate import ConfidentGNMax, GNMax, train_teachers
from deniable.placements.pate.aggregators import Aggregator
from deniable.train.trainer import accuracy, train_private

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.0f}s] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--model", default="papernot-cnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", nargs="+", default=["none", "dpsgd", "pate", "label-dp", "input"]
    )
    parser.add_argument(
        "--train-limit", type=int, default=0, help="first N training examples (dry run)"
    )
    # DP-SGD: the recipe of benchmarks/mnist.py, fewer epochs
    parser.add_argument("--dpsgd-epochs", type=float, default=10)
    parser.add_argument("--dpsgd-batch-size", type=int, default=512)
    parser.add_argument("--dpsgd-learning-rate", type=float, default=4.0)
    parser.add_argument("--dpsgd-max-grad-norm", type=float, default=0.1)
    # non-private fits (non-private row, label DP stages, input perturbation)
    parser.add_argument("--fit-epochs", type=int, default=3)
    parser.add_argument("--fit-learning-rate", type=float, default=0.005)
    # PATE
    parser.add_argument("--teachers", type=int, default=250)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--teacher-batch-size", type=int, default=32)
    parser.add_argument("--sigma-fraction", type=float, default=0.25, help="GNMax σ ≈ this × T")
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--student-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    full = load_dataset("mnist", args.data_dir, seed=args.seed)
    train = full.train
    if args.train_limit:
        train = train.subset(np.arange(args.train_limit))
    public, evaluation = public_split(Split(train=train, test=full.test))
    log(f"train {len(train)}, public {len(public)}, evaluation {len(evaluation.test)}")

    rows: list[dict[str, object]] = []
    if "none" in args.methods:
        rows.append(non_private(evaluation, args))
    for eps in args.epsilons:
        if "dpsgd" in args.methods:
            rows.append(dpsgd(evaluation, eps, args))
    if "pate" in args.methods:
        rows += pate(evaluation, public, full.test.labels[: len(public)], args)
    for eps in args.epsilons:
        for method in ("label-dp", "input"):
            if method in args.methods:
                rows.append(placement(evaluation, eps, method, args))

    result = {
        "benchmark": "mnist-placements",
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "delta": args.delta,
        "seed": args.seed,
        "train_size": len(train),
        "evaluated_on": "second half of the MNIST test split (the first is PATE's public data)",
        "evaluation_size": len(evaluation.test),
        "rows": rows,
        "seconds": time.perf_counter() - START,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "command": " ".join(sys.argv),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


def bulk_fit(args: argparse.Namespace) -> Fit:
    return Fit(
        model=args.model,
        epochs=args.fit_epochs,
        learning_rate=args.fit_learning_rate,
        batch_size=128,
        seed=args.seed,
    )


def non_private(evaluation: Split, args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    data = evaluation.train
    model = fit_classifier(
        data.features,
        data.labels,
        feature_shape=data.feature_shape,
        num_classes=data.num_classes,
        fit=bulk_fit(args),
    )
    row = {
        "method": "none (non-private)",
        "guarantee": "none",
        "epsilon": None,
        "test_accuracy": accuracy(model, evaluation.test),
        "seconds": time.perf_counter() - start,
        "settings": f"Adam lr {args.fit_learning_rate}, {args.fit_epochs} epochs, batch 128",
    }
    log(f"non-private: {row['test_accuracy']:.4f}")
    return row


def dpsgd(evaluation: Split, eps: float, args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    config = TrainConfig(
        dataset="mnist",
        model=args.model,
        epochs=args.dpsgd_epochs,
        batch_size=args.dpsgd_batch_size,
        learning_rate=args.dpsgd_learning_rate,
        momentum=0.0,
        max_grad_norm=args.dpsgd_max_grad_norm,
        target_epsilon=eps,
        delta=args.delta,
        seed=args.seed,
    )

    def progress(done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            log(f"dpsgd ε={eps:g}: step {done}/{total}")

    outcome = train_private(evaluation, config, progress=progress)
    spent = outcome.training.epsilon(args.delta)
    sigma = outcome.training.noise_multiplier
    row = {
        "method": "dpsgd",
        "guarantee": "central-dp",
        "unit": "one training example (add/remove)",
        "target_epsilon": eps,
        "epsilon": spent.epsilon,
        "test_accuracy": outcome.test_accuracy,
        "seconds": time.perf_counter() - start,
        "noise_multiplier": sigma,
        "steps": outcome.training.steps_done,
        "settings": (
            f"Poisson batch {args.dpsgd_batch_size}, {args.dpsgd_epochs:g} epochs, "
            f"C {args.dpsgd_max_grad_norm}, SGD lr {args.dpsgd_learning_rate}, σ {sigma:.3f}"
        ),
    }
    log(f"dpsgd ε={eps:g}: {row['test_accuracy']:.4f}")
    return row


def pate(
    evaluation: Split, public: np.ndarray, public_labels: np.ndarray, args: argparse.Namespace
) -> list[dict[str, object]]:
    private = evaluation.train
    t = args.teachers
    start = time.perf_counter()
    teacher_fit = Fit(
        model=args.model,
        epochs=args.teacher_epochs,
        learning_rate=args.fit_learning_rate,
        batch_size=args.teacher_batch_size,
        seed=args.seed,
    )

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            log(f"pate: teacher {done}/{total}")

    teachers = train_teachers(
        private, num_teachers=t, fit=teacher_fit, partition_seed=args.seed, progress=progress
    )
    votes = teachers.votes(public)
    shared_seconds = time.perf_counter() - start
    # diagnostics on the public half (its true labels are only used here): the mean teacher
    # accuracy is each query's votes for the true class over T, averaged
    teacher_acc = float(np.mean(votes[np.arange(len(votes)), public_labels]) / t)
    plurality = float(np.mean(np.argmax(votes, axis=1) == public_labels))
    log(f"pate: teachers + votes {shared_seconds:.0f}s, mean teacher accuracy {teacher_acc:.4f}")
    shared = {
        "teachers": t,
        "partition_sizes": [
            int(teachers.partition_sizes.min()),
            int(teachers.partition_sizes.max()),
        ],
        "mean_teacher_accuracy_on_public": teacher_acc,
        "plurality_accuracy_on_public": plurality,
        "teachers_and_votes_seconds": shared_seconds,
    }
    rows = []
    for eps in args.epsilons:
        queries, sigma = gnmax_setting(eps, t, len(public), private.num_classes, args)
        aggregators: list[Aggregator] = [GNMax(sigma)]
        confident = confident_setting(eps, t, queries, private.num_classes, args)
        if confident is None:
            log(f"pate ε={eps:g}: the threshold checks alone exceed ε; no Confident-GNMax row")
        else:
            aggregators.append(confident)
        for aggregator in aggregators:
            rows.append(
                student_row(
                    aggregator,
                    eps,
                    votes[:queries],
                    public[:queries],
                    public_labels[:queries],
                    evaluation,
                    shared,
                    args,
                )
            )
    return rows


def gnmax_setting(
    eps: float, teachers: int, pool: int, classes: int, args: argparse.Namespace
) -> tuple[int, float]:
    """Q = the most queries (≤ pool, ≥ 1) that the data-independent ε allows at σ = fraction × T
    (σ grows with Q), then σ calibrated (PLD) for exactly Q queries."""
    target = args.sigma_fraction * teachers
    # Q GNMax answers compose to one Gaussian with μ = √(2Q)/σ: a first guess from the μ that
    # spends ε, then exact checks by the accountant on either side.
    one, _ = smallest_noise(lambda s: GaussianEvent(sigma=s), eps, args.delta)
    queries = min(pool, max(1, math.floor((target / one) ** 2 / 2)))
    while queries < pool and calibrate_gnmax(queries + 1, eps, classes, args) <= target:
        queries += 1
    while queries > 1 and calibrate_gnmax(queries, eps, classes, args) > target:
        queries -= 1
    return queries, calibrate_gnmax(queries, eps, classes, args)


def calibrate_gnmax(queries: int, eps: float, classes: int, args: argparse.Namespace) -> float:
    sigma, _ = smallest_noise(
        lambda s: SelfComposedEvent(GNMax(s).query_event(classes), queries), eps, args.delta
    )
    return sigma


def confident_setting(
    eps: float, teachers: int, queries: int, classes: int, args: argparse.Namespace
) -> ConfidentGNMax | None:
    """Threshold 0.8 T, σ₁ = 0.6 T; σ₂ calibrated for all Q checks and up to Q answers (None
    when the checks alone exceed ε)."""
    threshold, sigma_threshold = 0.8 * teachers, 0.6 * teachers
    try:
        sigma, _ = smallest_noise(
            lambda s: ConfidentGNMax(threshold, sigma_threshold, s).run_event(queries, classes),
            eps,
            args.delta,
        )
    except DeniableError:
        return None
    return ConfidentGNMax(threshold, sigma_threshold, sigma)


def student_row(
    aggregator: Aggregator,
    eps: float,
    votes: np.ndarray,
    queries: np.ndarray,
    true_labels: np.ndarray,
    evaluation: Split,
    shared: dict[str, object],
    args: argparse.Namespace,
) -> dict[str, object]:
    start = time.perf_counter()
    private = evaluation.train
    aggregation = aggregator.aggregate(votes, RandomSource(args.seed))
    mask = aggregation.answered
    answered = int(mask.sum())
    fit = Fit(
        model=args.model,
        epochs=max(1, math.ceil(args.student_steps * args.student_batch_size / max(answered, 1))),
        learning_rate=args.fit_learning_rate,
        batch_size=args.student_batch_size,
        seed=args.seed,
    )
    student = fit_classifier(
        queries[mask],
        aggregation.labels[mask],
        feature_shape=private.feature_shape,
        num_classes=private.num_classes,
        fit=fit,
    )
    seconds = time.perf_counter() - start
    shared_seconds = float(shared["teachers_and_votes_seconds"])  # type: ignore[arg-type]
    claim = aggregation.epsilon(args.delta, unit="example (in one teacher partition)")
    dependent = aggregator.data_dependent_rdp(votes, aggregation).epsilon(args.delta)
    name = "gnmax" if isinstance(aggregator, GNMax) else "confident-gnmax"
    if isinstance(aggregator, GNMax):
        noise = f"σ {aggregator.sigma:.1f}"
    else:
        noise = (
            f"threshold {aggregator.threshold:g}, σ₁ {aggregator.sigma_threshold:g}, "
            f"σ₂ {aggregator.sigma:.1f}"
        )
    row = {
        "method": f"pate ({name})",
        "guarantee": claim.guarantee.value,
        "unit": claim.unit,
        "target_epsilon": eps,
        "epsilon": claim.epsilon,
        "test_accuracy": accuracy(student, evaluation.test),
        "seconds": seconds,
        "seconds_with_shared_teachers": seconds + shared_seconds,
        "queries": int(votes.shape[0]),
        "answered": answered,
        "answered_labels_correct": float(np.mean(aggregation.labels[mask] == true_labels[mask]))
        if answered
        else None,
        "student_epochs": fit.epochs,
        "data_dependent_epsilon_not_publishable": dependent.epsilon,
        "data_independent_epsilon_rdp_realised": dependent.details["data_independent_epsilon"],
        **shared,
        "settings": f"{shared['teachers']} teachers, {votes.shape[0]} queries, {noise}",
    }
    log(
        f"pate {name} ε={eps:g}: {row['test_accuracy']:.4f} "
        f"({answered}/{votes.shape[0]} answered, {row['answered_labels_correct']})"
    )
    return row


def placement(
    evaluation: Split, eps: float, method: str, args: argparse.Namespace
) -> dict[str, object]:
    start = time.perf_counter()
    config = TrainConfig(
        dataset="mnist",
        model=args.model,
        method=method,  # type: ignore[arg-type]
        target_epsilon=eps,
        delta=args.delta,
        seed=args.seed,
        fit_epochs=args.fit_epochs,
        fit_learning_rate=args.fit_learning_rate,
    )
    outcome = train_method(evaluation, config, method)  # type: ignore[arg-type]
    claim = outcome.claim
    details = outcome.details
    if method == "label-dp":
        settings = f"RR-with-prior, {details['stages']} stages (40 %/60 %)"
    else:
        settings = (
            f"pixels in [{config.input_low:g}, {config.input_high:g}], feature ε "
            f"{float(details['feature_epsilon']):.3f} (σ {float(details['feature_sigma']):.1f} "  # type: ignore[arg-type]
            f"per pixel), label k-RR ε {float(details['label_epsilon']):.2f}"  # type: ignore[arg-type]
        )
    row = {
        "method": method,
        "guarantee": claim.guarantee.value,
        "unit": claim.unit,
        "target_epsilon": eps,
        "epsilon": claim.epsilon,
        "test_accuracy": outcome.test_accuracy,
        "seconds": time.perf_counter() - start,
        "details": details,
        "settings": settings + f"; Adam {args.fit_epochs} epochs",
    }
    log(f"{method} ε={eps:g}: {row['test_accuracy']:.4f}")
    return row


if __name__ == "__main__":
    main()
