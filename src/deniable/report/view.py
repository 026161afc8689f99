"""What the report shows, as typed values computed from a run's ``result.json`` dict.

The template only lays these out; every number is formatted here (:mod:`deniable.report.fmt`)
and every plot rendered here (:mod:`deniable.report.plots`). Keys a result does not have show
as "—" rather than failing, so reports of older or partial runs still render; only the claim
itself (``epsilon`` and ``delta``) is required.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deniable.errors import DeniableError
from deniable.report import fmt, plots
from deniable.report.audit_view import AuditView, RocView, audit_view, roc_view
from deniable.report.plots import Plot
from deniable.report.tree import Node, to_node, toml_lines

REQUIRED = ("epsilon", "delta")
RELATIONS = {"add_remove": "add/remove-one", "replace_one": "replace-one"}
SAMPLERS = {
    "poisson": "Poisson sampling (each unit independently with probability q)",
    "fixed": "fixed-size batches, sampled without replacement",
}
# Result keys of the "beyond privacy" evaluations (fairness, generalisation, robustness,
# poisoning); a section appears for each one present.
BEYOND_KEYS = (
    "comparison",
    "beyond_privacy",
    "evaluation",
    "fairness",
    "generalisation",
    "robustness",
    "poisoning",
)
GUARANTEES = {
    "central-dp": "differential privacy",
    "label-dp": "label differential privacy (labels only; the features are not protected)",
    "local-dp": "local differential privacy (each record's report, before any training)",
}

Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class Claim:
    epsilon: str
    delta: str
    relation: str
    unit: str
    accountant: str
    sentence: str
    computed: Rows
    warnings: list[str]


@dataclass(frozen=True)
class Accuracy:
    rows: list[tuple[str, str, str, str]]  # model, test, train, train − test
    cost: str | None
    plot: Plot | None


@dataclass(frozen=True)
class ReportView:
    title: str
    run_id: str
    claim: Claim
    tiles: Rows
    epsilon_plot: Plot | None
    epsilon_rows: Rows
    accuracy: Accuracy
    audit: AuditView | None
    roc: RocView | None
    beyond: list[tuple[str, Node]]  # (heading, or "" for the generic key; content)
    dataset: Node
    config: Node
    config_toml: str
    versions: Node
    result_json: str


def check_result(result: object) -> Mapping[str, object]:
    """``result`` if it is a dict with the claim's keys, else a one-line :class:`DeniableError`."""
    if not isinstance(result, Mapping):
        raise DeniableError(f"a run result must be a JSON object, got {type(result).__name__}")
    missing = [key for key in REQUIRED if key not in result]
    if missing:
        raise DeniableError(f"the run result has no {', '.join(missing)}: not a deniable result")
    for key in REQUIRED:
        if fmt.as_float(result[key]) is None or isinstance(result[key], str):
            raise DeniableError(f"the run result's {key} must be a number, got {result[key]!r}")
    return result


def build_view(
    result: Mapping[str, object], run_dir: Path, audit_scores: Mapping[str, object] | None
) -> ReportView:
    """Everything the template needs, from ``result`` (checked with :func:`check_result`)."""
    result = check_result(result)
    config = _mapping(result.get("config"))
    claim = _claim(result, config)
    accuracy = _accuracy(result)
    audit = audit_view(result.get("audit"), result)
    roc = None if audit_scores is None else roc_view(audit_scores)
    tiles = [
        ("claimed ε", f"{claim.epsilon} (δ = {claim.delta})"),
        ("test accuracy, DP", fmt.percent(result.get("test_accuracy"))),
        ("test accuracy, non-private", fmt.percent(result.get("baseline_accuracy"))),
        ("audit: ε lower bound", "not audited" if audit is None else audit.headline),
    ]
    beyond = [
        ("" if key == "beyond_privacy" else key.replace("_", " "), to_node(result[key]))
        for key in BEYOND_KEYS
        if result.get(key) is not None
    ]
    curve_plot, curve_rows = _epsilon_curve(result, config)
    return ReportView(
        title=f"Privacy report: {run_dir.name}",
        run_id=run_dir.name,
        claim=claim,
        tiles=tiles,
        epsilon_plot=curve_plot,
        epsilon_rows=curve_rows,
        accuracy=accuracy,
        audit=audit,
        roc=roc,
        beyond=beyond,
        dataset=to_node(result.get("dataset") or {}),
        config=to_node(config),
        config_toml="\n".join(toml_lines(config)),
        versions=to_node(result.get("versions") or {}),
        result_json=json.dumps(result, indent=2, default=str, ensure_ascii=False),
    )


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _claim(result: Mapping[str, object], config: Mapping[str, object]) -> Claim:
    relation = str(result.get("relation") or "add_remove")
    relation_text = RELATIONS.get(relation, relation)
    unit = str(result.get("unit") or "example")
    accountant = str(result.get("accountant") or "—")
    sampler = str(config.get("sampling") or "—")
    secure = result.get("secure_noise")
    if secure is True:
        noise = "secure: drawn from the OS CSPRNG (not reproducible by seed)"
    elif secure is False:
        noise = f"seeded pseudo-random generator (seed {fmt.number(config.get('seed'))})"
    else:
        noise = "—"
    q, sigma, steps = result.get("sample_rate"), result.get("noise_multiplier"), result.get("steps")
    clip = config.get("max_grad_norm")
    eps_text, delta_text = fmt.eps(result["epsilon"]), fmt.delta(result["delta"])
    method = str(result.get("method") or "dpsgd")
    if method == "dpsgd":
        sentence = (
            f"Training satisfies ({eps_text}, {delta_text})-differential privacy under the "
            f"{relation_text} neighbouring relation, one privacy unit being one {unit}. The "
            f"{accountant.upper()} accountant computed this ε from the {fmt.number(steps)} "
            f"noisy steps that actually ran (sample rate q = {fmt.number(q)}, noise multiplier "
            f"σ = {fmt.number(sigma)}, clipping norm C = {fmt.number(clip)})."
        )
    else:
        guarantee = str(result.get("guarantee") or "central-dp")
        sentence = (
            f"Training by {method} satisfies ({eps_text}, {delta_text})-"
            f"{GUARANTEES.get(guarantee, guarantee)} under the {relation_text} neighbouring "
            f"relation, one privacy unit being one {unit}. The {accountant.upper()} accountant "
            "computed this ε from the mechanisms that actually ran (see method details)."
        )
    computed: Rows = [
        ("method", method),
        ("guarantee", str(result.get("guarantee") or "central-dp")),
        ("accountant", accountant),
        ("neighbouring relation", relation_text),
        ("privacy unit", unit),
        ("sampler", SAMPLERS.get(sampler, sampler)),
        ("sample rate q", fmt.number(q)),
        ("noise multiplier σ", fmt.number(sigma)),
        ("steps", fmt.number(steps)),
        ("clipping norm C", fmt.number(clip)),
        ("per-layer clipping", fmt.number(config.get("per_layer_clipping"))),
        ("noise", noise),
        ("target ε", fmt.number(config.get("target_epsilon"))),
        ("resumed from a checkpoint", fmt.number(result.get("resumed"))),
    ]
    warnings = []
    units = fmt.as_float(_mapping(result.get("dataset")).get("privacy_units"))
    delta_value = fmt.as_float(result["delta"])
    if units and delta_value is not None and delta_value >= 1 / units:
        warnings.append(
            f"δ = {delta_text} is not below 1/n = {fmt.delta(1 / units)} for n = "
            f"{fmt.number(int(units))} privacy units: a mechanism that publishes one unit's data "
            "at random satisfies this δ. Use δ ≪ 1/n."
        )
    return Claim(
        eps_text, delta_text, relation_text, unit, accountant, sentence, computed, warnings
    )


def _epsilon_curve(
    result: Mapping[str, object], config: Mapping[str, object]
) -> tuple[Plot | None, Rows]:
    curve = result.get("epsilon_curve")
    points = []
    if isinstance(curve, list):
        for point in curve:
            if not isinstance(point, Mapping):
                continue
            step, eps = fmt.as_float(point.get("step")), fmt.as_float(point.get("epsilon"))
            if step is not None and eps is not None:
                points.append((step, eps, fmt.as_float(point.get("epoch"))))
    if not points:
        return None, []
    steps = [p[0] for p in points]
    epsilons = [p[1] for p in points]
    last_step, _, last_epoch = points[-1]
    per_epoch = last_step / last_epoch if last_epoch else None
    target = fmt.as_float(config.get("target_epsilon"))
    plot = plots.epsilon_curve(
        steps,
        epsilons,
        delta=float(fmt.as_float(result["delta"]) or 0.0),
        target=target,
        steps_per_epoch=per_epoch,
    )
    rows = [
        ("points recorded", str(len(points))),
        ("ε after the first point", f"{fmt.eps(epsilons[0])} (step {fmt.number(steps[0])})"),
        ("ε at the end", f"{fmt.eps(epsilons[-1])} (step {fmt.number(steps[-1])})"),
    ]
    return plot, rows


def _accuracy(result: Mapping[str, object]) -> Accuracy:
    models = [
        ("DP-SGD", result.get("test_accuracy"), result.get("train_accuracy")),
        ("non-private", result.get("baseline_accuracy"), result.get("baseline_train_accuracy")),
    ]
    rows = []
    for name, test, train in models:
        t, r = fmt.as_float(test), fmt.as_float(train)
        gap = fmt.percent(r - t) if t is not None and r is not None else fmt.MISSING
        rows.append((name, fmt.percent(t), fmt.percent(r), gap))
    private, plain = fmt.as_float(models[0][1]), fmt.as_float(models[1][1])
    cost = None
    if private is not None and plain is not None:
        cost = f"{100 * (plain - private):.1f} percentage points of test accuracy"
    shown = [
        (name, fmt.as_float(test), fmt.as_float(train))
        for name, test, train in models
        if fmt.as_float(test) is not None or fmt.as_float(train) is not None
    ]
    plot = plots.accuracy_bars(shown) if shown else None
    return Accuracy(rows, cost, plot)
