"""Evaluate a finished run beyond privacy: fairness, generalisation, robustness, certificates.

:func:`evaluate_run` reloads ``runs/<id>`` (its ``result.json`` config, its dataset and the
model the run reported from ``checkpoint.pt`` — the parameter average when it kept one — as
:func:`deniable.pipeline.audit_run` does; for ``pate`` the second half of the test split, the
first being the student's public data), measures

- ``fairness``: per-group rates of each group column of the test split (or of ``group_column``;
  per true class when the data have none), with TPR/FPR/selection rate for binary tasks;
- ``generalisation``: train/test accuracy and loss gaps, Yeom et al.'s threshold attack and the
  membership-advantage bound of the run's (ε, δ) when its guarantee is central DP (a label-DP or
  local-DP ε does not bound membership of whole examples: the bound is then ``null``);
- ``robustness``: clean, FGSM and PGD accuracy in an L∞ ball of radius ``attack_epsilon``
  (default 5 % of the range of the training features: 0.05 for images in [0, 1]), inputs clipped
  to that range; an upper bound on the true robust accuracy;
- ``certified``: randomized smoothing (Cohen et al. 2019) of the private model with Gaussian
  noise ``sigma``, certified accuracy at each L2 radius of ``radii`` (radius 0 too);

and stores them under ``"evaluation"`` in ``result.json`` (every other key kept; the file is
replaced atomically). Like every accuracy in ``result.json`` these figures are computed on the
data without noise: diagnostics for the data owner, not releases covered by ε.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from deniable.config import TrainConfig
from deniable.data import ArrayDataset, Split
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.evaluate._common import DEFAULT_BATCH_SIZE, json_number
from deniable.evaluate.fairness import fairness_report
from deniable.evaluate.generalisation import generalisation_report
from deniable.evaluate.robustness import LinfBall, fgsm, pgd, robust_accuracy
from deniable.evaluate.smoothing import SmoothedClassifier, certified_radius, certify_dataset

ATTACK_FRACTION = 0.05
"""Default L∞ attack radius as a fraction of the range (max − min) of the training features."""

EVALUATION_SCOPE = (
    "computed on the data without noise with the private model of checkpoint.pt: diagnostics "
    "for the data owner, not releases covered by epsilon"
)


def evaluate_run(
    run_dir: Path,
    *,
    group_column: str | None = None,
    radii: Sequence[float] = (0.1, 0.3, 0.5),
    fairness: bool = True,
    generalisation: bool = True,
    attacks: bool = True,
    certify: bool = True,
    attack_epsilon: float | None = None,
    pgd_steps: int = 10,
    attack_limit: int | None = 1000,
    sigma: float = 0.25,
    certify_limit: int = 100,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    data_dir: Path | None = None,
    seed: int = 0,
    write: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, object]:
    """Evaluate the private model of the finished run in ``run_dir``; return the evaluation.

    ``group_column``: one group column for fairness (``None``: all the test split has, or the
    classes). ``fairness``/``generalisation``/``attacks``/``certify`` switch each part off (its
    key is then ``null``). Attacks run on ``attack_limit`` seeded test examples (``None``: all),
    PGD with ``pgd_steps`` steps and one random start. Smoothing certifies ``certify_limit``
    seeded test examples with ``n0`` selection and ``n`` estimation draws at confidence
    ``1 − alpha`` (with ``n = 1000``, ``alpha = 0.001`` the largest certifiable radius is about
    2.46·``sigma``). ``data_dir`` overrides the run's data folder (a run moved to another
    machine). ``write=False`` leaves ``result.json`` untouched.
    """
    radii = tuple(_radius(r) for r in radii)
    check_count("pgd_steps", pgd_steps)
    check_positive("sigma", sigma)
    check_count("certify_limit", certify_limit)
    if attack_limit is not None:
        check_count("attack_limit", attack_limit)
    result_path, result, config, split, model = _load_run(Path(run_dir), data_dir)
    epsilon = result.get("epsilon")
    delta = result.get("delta")
    guarantee = str(result.get("guarantee", "central-dp"))
    evaluation: dict[str, object] = {
        "model": "private",
        "method": config.method,
        "guarantee": guarantee,
        "epsilon": epsilon,
        "delta": delta,
        "dataset": split.name,
        "test_size": len(split.test),
        "scope": EVALUATION_SCOPE,
    }
    timings: dict[str, float] = {}
    evaluation["fairness"] = None
    if fairness:
        start = time.perf_counter()
        evaluation["fairness"] = _fairness(model, split, group_column, batch_size)
        timings["fairness"] = time.perf_counter() - start
    evaluation["generalisation"] = None
    if generalisation:
        start = time.perf_counter()
        # the membership-advantage bound needs central DP of whole examples: a label-DP ε
        # (features public) bounds nothing here, a local-DP ε is about one report
        bounded = guarantee == "central-dp" and epsilon is not None
        evaluation["generalisation"] = generalisation_report(
            model,
            split.train,
            split.test,
            epsilon=float(epsilon) if bounded else None,  # type: ignore[arg-type]
            delta=float(delta or 0.0) if bounded else 0.0,  # type: ignore[arg-type]
            batch_size=batch_size,
        ).to_dict()
        timings["generalisation"] = time.perf_counter() - start
    low, high = _feature_range(split.train)
    evaluation["robustness"] = None
    if attacks:
        start = time.perf_counter()
        radius = (
            ATTACK_FRACTION * (high - low)
            if attack_epsilon is None
            else check_positive("attack_epsilon", attack_epsilon)
        )
        data = _sample(split.test, attack_limit, seed)
        evaluation["robustness"] = _robustness(
            model, data, radius, (low, high), pgd_steps, seed, batch_size
        )
        timings["robustness"] = time.perf_counter() - start
    evaluation["certified"] = None
    if certify:
        start = time.perf_counter()
        data = _sample(split.test, certify_limit, seed)
        smoothed = SmoothedClassifier(model, split.num_classes, sigma, batch_size=n)
        report = certify_dataset(smoothed, data, n0=n0, n=n, alpha=alpha, seed=seed)
        evaluation["certified"] = {
            "method": "randomized_smoothing",
            "norm": "l2",
            "n0": n0,
            "draws": n,
            "alpha": alpha,
            "max_certifiable_radius": _max_radius(n, sigma, alpha),
            **report.to_dict(radii=(0.0, *radii)),
        }
        timings["certified"] = time.perf_counter() - start
    evaluation["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    if write:
        result["evaluation"] = evaluation
        write_json_atomic(result_path, result)
    return evaluation


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file in the same folder and
    ``os.replace``: the old file stays whole until the new one is complete."""
    text = json.dumps(data, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_run(
    run_dir: Path, data_dir: Path | None
) -> tuple[Path, dict[str, object], TrainConfig, Split, nn.Module]:
    """:func:`deniable.pipeline.load_run`, with PATE's split halved: its student was fitted on
    the first half of the test split, so it is evaluated on the other."""
    from deniable.methods import public_split
    from deniable.pipeline import load_run

    result_path, result, config, split, model = load_run(run_dir, data_dir)
    if config.method == "pate":
        split = public_split(split)[1]
    return result_path, result, config, split, model


def _fairness(
    model: nn.Module, split: Split, group_column: str | None, batch_size: int
) -> dict[str, object]:
    columns: list[str | None]
    columns = [group_column] if group_column is not None else list(split.test.groups) or [None]
    positive = 1 if split.num_classes == 2 else None
    reports = {}
    for column in columns:
        report = fairness_report(
            model, split.test, column, positive_label=positive, batch_size=batch_size
        )
        reports[report.column] = report.to_dict()
    return {"grouping": "class" if columns == [None] else "groups", "columns": reports}


def _robustness(
    model: nn.Module,
    data: ArrayDataset,
    radius: float,
    bounds: tuple[float, float],
    steps: int,
    seed: int,
    batch_size: int,
) -> dict[str, object]:
    ball = LinfBall(radius)
    fast = robust_accuracy(
        model, data, functools.partial(fgsm, ball=ball, bounds=bounds), batch_size=batch_size
    )
    strong = robust_accuracy(
        model,
        data,
        functools.partial(pgd, ball=ball, steps=steps, random_starts=1, bounds=bounds, seed=seed),
        batch_size=batch_size,
    )
    return {
        "norm": "linf",
        "epsilon": radius,
        "bounds": [bounds[0], bounds[1]],
        "n": fast.n,
        "clean_accuracy": fast.clean_accuracy,
        "fgsm_accuracy": fast.robust_accuracy,
        "pgd_accuracy": strong.robust_accuracy,
        "pgd_steps": steps,
        "pgd_random_starts": 1,
    }


def _sample(data: ArrayDataset, limit: int | None, seed: int) -> ArrayDataset:
    """``limit`` seeded examples of ``data`` in their original order (all when it has fewer)."""
    if limit is None or limit >= len(data):
        return data
    chosen = np.random.default_rng(seed).choice(len(data), size=limit, replace=False)
    return data.subset(np.sort(chosen))


def _feature_range(data: ArrayDataset) -> tuple[float, float]:
    low, high = float(data.features.min()), float(data.features.max())
    if not high > low:
        raise DeniableError(f"dataset {data.name!r} has constant features: nothing to attack")
    return low, high


def _max_radius(n: int, sigma: float, alpha: float) -> float | None:
    """The radius certified when all ``n`` draws vote for the top class."""
    return json_number(certified_radius(n, n, sigma, alpha)[1])


def _radius(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidParameterError("radii", value, "positive L2 radii")
    if not math.isfinite(value):
        raise InvalidParameterError("radii", value, "finite positive L2 radii")
    return float(value)
