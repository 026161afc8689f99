"""Log a finished run (the dict ``deniable run`` returns, or its ``result.json``) to a tracker.

Every number comes from the result as written: ε from the accountant over the recorded events,
the audit's lower bound from its attack. Metric names (all at step = the run's step count unless
they are per-step):

- ``privacy/epsilon`` at every point of the ε curve (per epoch) and at the last step;
  ``privacy/delta``.
- ``accuracy/test``, ``accuracy/train`` (private model), ``accuracy/baseline_test``,
  ``accuracy/baseline_train`` (non-private baseline).
- ``audit/epsilon_lower_bound`` (one-run canaries, DP-SGD),
  ``audit/epsilon_lower_bound_non_private`` (the same canaries without DP),
  ``audit/loss_auc``, ``audit/loss_advantage``, ``audit/loss_tpr_at_fpr_<level>`` (LOSS
  attack on the reported model).
- ``beyond/accuracy_gap`` and ``beyond/baseline_accuracy_gap`` (train − test accuracy); per
  fairness column C (the class when the data has no sensitive column)
  ``beyond/fairness/C/accuracy_gap``, ``.../baseline_accuracy_gap`` (max − min accuracy over
  groups) and ``.../disparate_impact_drop_gap``.

Parameters: the claim's descriptors (``delta``, ``accountant``, ``relation``, ``unit``,
``noise_multiplier``, ``sample_rate``, ``steps``, ``secure_noise``, ``privacy_scope``), and
``config.*``, ``dataset.*``, ``versions.*``. Artifacts: ``result.json`` and ``report.html`` of
the run folder when they exist (and ``checkpoint.pt`` with ``checkpoint=True``).

Accuracies, attack metrics and the beyond-privacy figures are computed without noise: like the
result's own ``privacy_scope`` says, they are diagnostics for the data owner, not releases
covered by ε.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from deniable.tracking.base import Tracker, metric_value

CLAIM_PARAMS = (
    "delta",
    "accountant",
    "relation",
    "unit",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "secure_noise",
    "privacy_scope",
    "resumed",
)
ACCURACIES = {
    "test_accuracy": "accuracy/test",
    "train_accuracy": "accuracy/train",
    "baseline_accuracy": "accuracy/baseline_test",
    "baseline_train_accuracy": "accuracy/baseline_train",
}
ARTIFACTS = ("result.json", "report.html")

_Log = Callable[..., None]


def track_run(
    result: Mapping[str, object],
    tracker: Tracker,
    *,
    epsilon_curve: bool = True,
    artifacts: bool = True,
    checkpoint: bool = False,
) -> dict[str, float]:
    """Log ``result`` to ``tracker``; returns the final value of every metric logged.

    ``epsilon_curve=False`` skips the per-epoch ε points, for when a :class:`StepLogger` already
    logged them during training; the final ε is then logged only when it is not the curve's
    last point (the trainer puts one at the last step).
    """
    params: dict[str, object] = {k: result[k] for k in CLAIM_PARAMS if k in result}
    for key in ("config", "dataset", "versions"):
        value = result.get(key)
        if isinstance(value, Mapping):
            params[key] = value
    tracker.log_params(params)

    logged: dict[str, float] = {}
    last_step = _int(result.get("steps"))

    def log(name: str, value: object, step: int | None = last_step) -> None:
        number = metric_value(name, value)
        if number is not None:
            tracker.log_metric(name, number, step)
            logged[name] = number

    curve = result.get("epsilon_curve")
    points = [p for p in curve if isinstance(p, Mapping)] if isinstance(curve, list) else []
    curve_steps: set[int] = set()
    for point in points:
        step = _int(point.get("step"))
        if step is not None:
            curve_steps.add(step)
            if epsilon_curve:
                log("privacy/epsilon", point.get("epsilon"), step)
    if last_step not in curve_steps:  # else the curve's last point is the final ε
        log("privacy/epsilon", result.get("epsilon"))
    log("privacy/delta", result.get("delta"))
    for key, name in ACCURACIES.items():
        log(name, result.get(key))
    _log_audit(result, log)
    _log_beyond(result, log)

    run_dir = result.get("run_dir")
    if artifacts and isinstance(run_dir, str | Path):
        names = (*ARTIFACTS, "checkpoint.pt") if checkpoint else ARTIFACTS
        for name in names:
            path = Path(run_dir) / name
            if path.is_file():
                tracker.log_artifact(path)
    return logged


def _log_audit(result: Mapping[str, object], log: _Log) -> None:
    log("audit/epsilon_lower_bound", result.get("audit_epsilon_lower_bound"))
    audit = result.get("audit")
    if not isinstance(audit, Mapping):
        return
    log(
        "audit/epsilon_lower_bound_non_private",
        _get(audit, "non_private", "bound", "epsilon"),
    )
    loss = audit.get("loss_attack_on_reported_model")
    if isinstance(loss, Mapping):
        log("audit/loss_auc", loss.get("auc"))
        log("audit/loss_advantage", loss.get("advantage"))
        tprs = loss.get("tpr_at_fpr")
        if isinstance(tprs, Mapping):
            for level, tpr in tprs.items():
                log(f"audit/loss_tpr_at_fpr_{float(level):g}", tpr)


def _log_beyond(result: Mapping[str, object], log: _Log) -> None:
    beyond = result.get("beyond_privacy")
    if not isinstance(beyond, Mapping):
        return
    log("beyond/accuracy_gap", _get(beyond, "generalisation", "private", "accuracy_gap"))
    log(
        "beyond/baseline_accuracy_gap",
        _get(beyond, "generalisation", "baseline", "accuracy_gap"),
    )
    fairness = beyond.get("fairness")
    if not isinstance(fairness, Mapping):
        return
    for column, report in fairness.items():
        if not isinstance(report, Mapping):
            continue
        prefix = f"beyond/fairness/{column}"
        log(f"{prefix}/accuracy_gap", _get(report, "private", "gaps", "accuracy"))
        log(f"{prefix}/baseline_accuracy_gap", _get(report, "baseline", "gaps", "accuracy"))
        log(f"{prefix}/disparate_impact_drop_gap", _get(report, "disparate_impact", "drop_gap"))


def _get(data: Mapping[str, object], *keys: str) -> object:
    """``data[k1][k2]...``, or None where a level is missing."""
    value: object = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
