"""The audit section: the one-run canary bounds beside the claim, the LOSS attack, the ROC.

Reads the ``audit`` block that :mod:`deniable.auditing` writes into ``result.json`` (and, when
the caller has them, raw attack scores for a log-log ROC). A lower bound is an ε the audited
*training algorithm* provably exceeds at the stated confidence, so it must stay at or below the
accountant's ε; the non-private algorithm audited with the same canaries shows that the attack
has the power to find leakage when there is some.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deniable.audit.metrics import ROC, attack_metrics, roc_curve, validate_scores
from deniable.errors import DeniableError
from deniable.report import fmt, plots
from deniable.report.plots import Plot

Rows = list[tuple[str, str]]
CANARY_LABELS = (
    "claimed ε (accountant)",
    "ε lower bound",
    "δ",
    "canaries m (included)",
    "guesses (correct)",
    "p-value of the chosen guess count",
    "test accuracy with canaries",
)
DEFAULT_ROC_NAME = "LOSS attack"


@dataclass(frozen=True)
class LossView:
    auc: str
    advantage: str
    tpr: Rows  # (FPR level, TPR there)
    members: str
    nonmembers: str


@dataclass(frozen=True)
class AuditView:
    confidence: str
    headline: str
    canary_columns: list[str]  # the audited algorithms
    canary_rows: list[tuple[str, list[str]]]  # (quantity, its value per algorithm)
    method: str
    selection: str
    plot: Plot | None
    verdict: str
    verdict_level: str  # "ok", "bad" or "info"
    loss: LossView | None


@dataclass(frozen=True)
class RocView:
    plot: Plot
    rows: list[tuple[str, ...]]  # name, AUC, TPR at 1 %, 0.1 %, 0 % FPR, members, non-members


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def audit_view(audit: object, result: Mapping[str, object]) -> AuditView | None:
    """The audit section, or ``None`` when the run was not audited (``audit`` null or absent)."""
    if not isinstance(audit, Mapping):
        return None
    confidence = fmt.as_float(audit.get("confidence"))
    private = _mapping(audit.get("private"))
    plain = _mapping(audit.get("non_private"))
    private_bound = _mapping(private.get("bound"))
    lower = fmt.as_float(private_bound.get("epsilon"))
    if lower is None:
        lower = fmt.as_float(audit.get("epsilon_lower_bound"))
    claimed = fmt.as_float(private.get("claimed_epsilon"))
    if claimed is None:
        claimed = fmt.as_float(result.get("epsilon"))
    conf_text = fmt.percent(confidence, 0)
    columns = [("DP-SGD (this run's settings)", _canary_column(private, claimed))]
    if plain:
        columns.append(("non-private (same canaries)", _canary_column(plain, None)))
    rows = [(label, [c[1][i] for c in columns]) for i, label in enumerate(CANARY_LABELS)]
    bars: list[tuple[str, float, str]] = []
    if claimed is not None:
        bars.append(("claimed ε, DP-SGD", claimed, "claim"))
    if lower is not None:
        bars.append(("lower bound, DP-SGD", lower, "dp"))
    plain_lower = fmt.as_float(_mapping(plain.get("bound")).get("epsilon"))
    if plain_lower is not None:
        bars.append(("lower bound, non-private", plain_lower, "plain"))
    plot = plots.audit_bars(bars, confidence=confidence or 0.0) if bars else None
    verdict, level = _verdict(lower, claimed, plain_lower, conf_text)
    details = _mapping(private_bound.get("details"))
    return AuditView(
        confidence=conf_text,
        headline=f"{fmt.eps(lower)} at {conf_text} confidence",
        canary_columns=[c[0] for c in columns],
        canary_rows=rows,
        method=str(private_bound.get("method") or "—"),
        selection=str(details.get("selection") or "—"),
        plot=plot,
        verdict=verdict,
        verdict_level=level,
        loss=_loss(audit.get("loss_attack_on_reported_model")),
    )


def _canary_column(block: Mapping[str, object], claimed: float | None) -> list[str]:
    bound = _mapping(block.get("bound"))
    details = _mapping(bound.get("details"))
    return [
        "none (no DP)" if claimed is None else fmt.eps(claimed),
        fmt.eps(bound.get("epsilon")),
        fmt.delta(bound.get("delta")),
        f"{fmt.number(block.get('canaries'))} ({fmt.number(block.get('included'))})",
        f"{fmt.number(details.get('guesses'))} ({fmt.number(details.get('correct'))})",
        fmt.delta(details.get("p_value")),
        fmt.percent(block.get("test_accuracy")),
    ]


def _verdict(
    lower: float | None, claimed: float | None, plain_lower: float | None, confidence: str
) -> tuple[str, str]:
    if lower is None or claimed is None:
        return "The audit block has no lower bound to compare with the claim.", "info"
    if lower > claimed * (1 + 1e-9):
        return (
            f"The measured lower bound {fmt.eps(lower)} EXCEEDS the claimed ε = "
            f"{fmt.eps(claimed)}: either the implementation or the accounting is wrong, or a "
            f"test failure that happens with probability at most 1 − {confidence} occurred. "
            "Rerun the audit with fresh randomness before trusting this claim.",
            "bad",
        )
    text = (
        f"Consistent: the measured lower bound {fmt.eps(lower)} does not exceed the claimed "
        f"ε = {fmt.eps(claimed)}."
    )
    if plain_lower is None:
        return text, "ok"
    if plain_lower <= lower:
        text += (
            f" But the same audit of the non-private algorithm finds only ε ≥ "
            f"{fmt.eps(plain_lower)}: with these canaries the attack has little power, so the "
            "low bound for DP-SGD says little (more canaries give a stronger audit)."
        )
        return text, "info"
    text += (
        f" The same audit finds ε ≥ {fmt.eps(plain_lower)} for the non-private algorithm, "
        "which shows how much the attack can detect when nothing protects the canaries."
    )
    return text, "ok"


def _loss(block: object) -> LossView | None:
    if not isinstance(block, Mapping):
        return None
    tpr = _mapping(block.get("tpr_at_fpr"))
    levels = sorted(
        ((fmt.as_float(k), v) for k, v in tpr.items() if fmt.as_float(k) is not None),
        key=lambda kv: -float(kv[0] or 0.0),
    )
    return LossView(
        auc=fmt.number(block.get("auc")),
        advantage=fmt.number(block.get("advantage")),
        tpr=[(fmt.fpr_level(level), fmt.percent(value, 2)) for level, value in levels],
        members=fmt.number(block.get("n_members")),
        nonmembers=fmt.number(block.get("n_nonmembers")),
    )


def roc_view(audit_scores: Mapping[str, object]) -> RocView:
    """ROC curves from raw scores: ``{"scores": …, "is_member": …}`` for one attack (shown as
    "LOSS attack"), or ``{name: {"scores": …, "is_member": …}, …}`` for several."""
    if not isinstance(audit_scores, Mapping) or not audit_scores:
        raise DeniableError(
            "audit_scores must be a dict with 'scores' and 'is_member' arrays "
            "(or a dict of such dicts, one per attack)"
        )
    named = {DEFAULT_ROC_NAME: audit_scores} if "scores" in audit_scores else dict(audit_scores)
    curves: list[tuple[str, ROC]] = []
    rows: list[tuple[str, ...]] = []
    for name, entry in named.items():
        if not isinstance(entry, Mapping) or "scores" not in entry or "is_member" not in entry:
            raise DeniableError(f"audit_scores[{name!r}] must have 'scores' and 'is_member' arrays")
        scores, members = validate_scores(entry["scores"], entry["is_member"])
        roc = roc_curve(scores, members)
        metrics = attack_metrics(scores, members)
        curves.append((str(name), roc))
        rows.append(
            (
                str(name),
                fmt.number(metrics.auc),
                *(fmt.percent(metrics.tpr_at_fpr[level], 2) for level in (0.01, 0.001, 0.0)),
                str(roc.n_members),
                str(roc.n_nonmembers),
            )
        )
    return RocView(plot=plots.roc_loglog(curves), rows=rows)
