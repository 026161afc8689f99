"""The main job: train private and non-private models, write ``runs/<id>/result.json``.

``result.json`` is a contract (../shared/DESIGN.md): at least ``epsilon``, ``delta``,
``test_accuracy``, ``baseline_accuracy``, ``audit_epsilon_lower_bound`` and ``report``. The audit
and the HTML report come with their own issues; until then those two are null.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from deniable import __version__
from deniable.accounting.calibrate import delta_warning
from deniable.config import TrainConfig, training_keys
from deniable.data import Split, load_dataset
from deniable.errors import DeniableError
from deniable.evaluate import beyond_privacy_summary
from deniable.fleet import Backend
from deniable.models import build_model
from deniable.report import render_report
from deniable.train.checkpoint import (
    load_checkpoint,
    reported_model_state,
    save_model_checkpoint,
)
from deniable.train.trainer import StepHook, train_baseline, train_private

Progress = Callable[[int, int], None]

AUDIT_SKIPPED = (
    "not audited: the run's guarantee is {guarantee}, and the canary audit tests example-level "
    "central DP (a canary added or removed), which that guarantee does not claim"
)

PRIVACY_SCOPE = (
    "epsilon covers the trained model (checkpoint.pt) and nothing else: the accuracies, the "
    "non-private baseline and the audit are computed on the data without noise; they are "
    "diagnostics for the data owner, not for release"
)


def new_run_dir(out: Path) -> Path:
    """A fresh directory ``out/<timestamp>-<random>``."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    path = out / run_id
    path.mkdir(parents=True, exist_ok=False)
    return path


def run(
    config: TrainConfig,
    *,
    run_dir: Path | None = None,
    baseline: bool = True,
    audit_model: bool = True,
    progress: Progress | None = None,
    on_step: StepHook | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> dict[str, object]:
    """Train (resuming from ``run_dir``'s checkpoint when there is one) and write result.json."""
    split = load_dataset(config.dataset, config.data_dir, seed=config.seed or 0)
    units = len(split.train) if split.train.keys is None else len(set(split.train.keys.tolist()))
    message = delta_warning(config.delta, units)
    if message:
        warn(message)
    if run_dir is None:
        run_dir = new_run_dir(config.out)
    checkpoint = run_dir / "checkpoint.pt"
    resume = checkpoint.exists()
    if resume:
        saved = load_checkpoint(checkpoint)["config"]
        if not isinstance(saved, dict) or training_keys(saved) != training_keys(
            config.model_dump(mode="json")
        ):
            raise DeniableError(
                f"{run_dir} was trained with a different config; resume it with the same one "
                "or start a new run (its spent privacy stays recorded in the checkpoint)"
            )
    if config.method == "dpsgd":
        trained = _dpsgd(split, config, checkpoint, progress, on_step)
    else:
        trained = _placement(split, config, checkpoint)
    model = trained.pop("model")
    assert isinstance(model, nn.Module)
    result: dict[str, object] = {
        **trained,
        "baseline_accuracy": None,
        "baseline_train_accuracy": None,
        "audit_epsilon_lower_bound": None,
        "report": None,
        "privacy_scope": PRIVACY_SCOPE,
        "resumed": resume,
        "dataset": {
            "name": split.name,
            "train_size": len(split.train),
            "test_size": len(split.test),
            "privacy_units": units,
        },
        "config": config.model_dump(mode="json"),
        "versions": {
            "deniable": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "run_dir": str(run_dir),
    }
    eps, delta = float(trained["epsilon"]), float(trained["delta"])  # type: ignore[arg-type]
    if baseline:
        baseline_model, test_acc, train_acc = train_baseline(split, config)
        result["baseline_accuracy"] = test_acc
        result["baseline_train_accuracy"] = train_acc
        result["beyond_privacy"] = beyond_privacy_summary(
            split, model, baseline_model, epsilon=eps, delta=delta
        )
    if config.compare:
        from deniable.comparison import compare_methods

        result["comparison"] = compare_methods(split, config, (model, result))
    audit_scores = None
    if audit_model and config.audit and result["guarantee"] != "central-dp":
        result["audit"] = {"skipped": AUDIT_SKIPPED.format(guarantee=result["guarantee"])}
    elif audit_model and config.audit:
        from deniable.auditing import audit

        outcome = audit(
            split, config, model, canaries=config.audit_canaries, progress=progress
        )
        result["audit_epsilon_lower_bound"] = outcome.epsilon_lower_bound
        result["audit"] = outcome.to_dict()
        audit_scores = {"scores": outcome.loss_scores, "is_member": outcome.loss_is_member}
    result["report"] = str(run_dir / "report.html")
    render_report(result, run_dir, audit_scores=audit_scores)
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _dpsgd(
    split: Split,
    config: TrainConfig,
    checkpoint: Path,
    progress: Progress | None,
    on_step: StepHook | None,
) -> dict[str, object]:
    """DP-SGD, resumed from ``checkpoint`` when it exists; the model and its claim."""
    private = train_private(
        split, config, checkpoint=checkpoint, progress=progress, on_step=on_step
    )
    eps = private.training.epsilon(config.delta, config.accountant)
    return {
        "model": private.model,
        "method": "dpsgd",
        "guarantee": "central-dp",
        "epsilon": eps.epsilon,
        "delta": eps.delta,
        "accountant": eps.accountant,
        "relation": eps.relation.value,
        "unit": private.training.tracker.unit,
        "noise_multiplier": private.training.noise_multiplier,
        "sample_rate": private.training.sample_rate,
        "steps": private.training.steps_done,
        "secure_noise": private.training.noise.secure,
        "test_accuracy": private.test_accuracy,
        "train_accuracy": private.train_accuracy,
        "epsilon_curve": private.epsilon_curve,
        "per_sample": private.per_sample,
    }


def _placement(split: Split, config: TrainConfig, checkpoint: Path) -> dict[str, object]:
    """Another noise placement (:mod:`deniable.methods`). Its noise is drawn once: a run folder
    whose checkpoint holds the released model is reloaded, never trained (and paid for) again."""
    from deniable.methods import model_name, train_method

    if checkpoint.exists():
        state = load_checkpoint(checkpoint)
        saved = state["extra"]
        assert isinstance(saved, dict)
        model = build_model(model_name(config), split.feature_shape, split.num_classes)
        model.load_state_dict(reported_model_state(state))
        return {"model": model, **saved}
    outcome = train_method(split, config)
    claim = outcome.claim.to_dict()
    trained: dict[str, object] = {
        "method": outcome.method,
        "guarantee": claim["guarantee"],
        "epsilon": claim["epsilon"],
        "delta": claim["delta"],
        "accountant": claim["accountant"],
        "relation": claim["relation"],
        "unit": claim["unit"],
        "noise_multiplier": None,
        "sample_rate": None,
        "steps": None,
        "secure_noise": outcome.details.get("secure_noise"),
        "test_accuracy": outcome.test_accuracy,
        "train_accuracy": outcome.train_accuracy,
        "epsilon_curve": [],
        "method_details": outcome.details,
    }
    save_model_checkpoint(checkpoint, outcome.model, config.model_dump(mode="json"), trained)
    return {"model": outcome.model, **trained}


def audit_config(config: TrainConfig) -> dict[str, object]:
    """Audit a training algorithm before anything is released: the one-run canary audits of
    ``config`` (its method, and without privacy) and the LOSS attack on the canary run's model.
    Writes nothing; the result holds the claimed ε, the bounds and the attack."""
    from deniable.auditing import audit

    split = load_dataset(config.dataset, config.data_dir, seed=config.seed or 0)
    outcome = audit(split, config, canaries=config.audit_canaries)
    return {
        "config": config.model_dump(mode="json"),
        "claimed_epsilon": outcome.private.claimed_epsilon,
        "delta": config.delta,
        **outcome.to_dict(),
    }


def load_run(
    run_dir: Path, data_dir: Path | None = None
) -> tuple[Path, dict[str, object], TrainConfig, Split, nn.Module]:
    """A finished run folder: its result.json path and content, its config (``data_dir``
    overriding the saved one), its dataset and the model it reported, in eval mode. Every
    missing or damaged piece is a one-line :class:`DeniableError`."""
    from deniable.methods import model_name

    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise DeniableError(f"{run_dir} has no result.json; give the folder of a finished run")
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        raise DeniableError(f"{run_dir} has no checkpoint.pt; give the folder of a finished run")
    try:
        result = json.loads(result_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeniableError(f"{result_path} is not valid JSON ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("config"), dict):
        raise DeniableError(f"{result_path} has no run config; was it written by deniable run?")
    settings = dict(result["config"])
    if data_dir is not None:
        settings["data_dir"] = str(data_dir)
    try:
        config = TrainConfig.model_validate(settings)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise DeniableError(f"{result_path} holds an invalid run config ({first})") from None
    split = load_dataset(config.dataset, config.data_dir, seed=config.seed or 0)
    state = load_checkpoint(checkpoint)
    model = build_model(model_name(config), split.feature_shape, split.num_classes)
    try:
        model.load_state_dict(reported_model_state(state))
    except (KeyError, TypeError, AssertionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeniableError(f"{checkpoint} does not fit the run's model ({first})") from None
    model.eval()
    return result_path, result, config, split, model


def audit_run(
    run_dir: Path,
    *,
    canaries: bool = True,
    lira_shadows: int = 0,
    workers: int = 1,
    backend: Backend = "processes",
    max_examples: int = 1000,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Audit a finished run again (its config, its checkpointed model); update result.json.

    ``canaries``: the one-run canary audits and the LOSS attack (what ``deniable run`` does).
    ``lira_shadows`` > 0: also LiRA with that many shadows trained like the run
    (:mod:`deniable.lira_audit`), in ``workers`` processes or Ray tasks (``backend``), on up to
    ``max_examples`` members and as many non-members; stored under ``audit.lira``.
    """
    from deniable.auditing import audit

    if not canaries and lira_shadows <= 0:
        raise DeniableError("nothing to audit: keep the canary audit or ask for LiRA shadows")
    result_path, result, config, split, model = load_run(run_dir)
    if result.get("guarantee", "central-dp") != "central-dp":
        raise DeniableError(AUDIT_SKIPPED.format(guarantee=result["guarantee"]))
    previous = result.get("audit")
    block: dict[str, object] = dict(previous) if isinstance(previous, dict) else {}
    audit_scores = None
    if canaries:
        outcome = audit(
            split, config, model, canaries=config.audit_canaries, progress=progress
        )
        result["audit_epsilon_lower_bound"] = outcome.epsilon_lower_bound
        block.update(outcome.to_dict())
        audit_scores = {"scores": outcome.loss_scores, "is_member": outcome.loss_is_member}
    if lira_shadows > 0:
        from deniable.lira_audit import lira_audit

        sigma = result.get("noise_multiplier")
        block["lira"] = lira_audit(
            split,
            config,
            model,
            noise_multiplier=float(sigma) if isinstance(sigma, int | float) else None,
            shadows=lira_shadows,
            workers=workers,
            backend=backend,
            max_examples=max_examples,
            progress=progress,
        )
    result["audit"] = block
    result["report"] = str(run_dir / "report.html")
    render_report(result, run_dir, audit_scores=audit_scores)
    tmp = result_path.with_name(result_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, result_path)
    return result
