"""Auditing: membership inference, canaries, and empirical ε lower bounds from attack scores.

This package namespace re-exports the score-level parts, which import no torch (metrics,
bounds). The parts that run models import torch and are used from their modules: ``signals``,
``shadows``, ``mia`` (attacks), ``canaries`` and ``step_audit`` (white-box DP-SGD step audit with
Dirac gradient canaries).
"""

from deniable.audit.bounds import (
    BonferroniThresholds,
    FixedThreshold,
    HeldOutThreshold,
    LowerBound,
    ThresholdStrategy,
    clopper_pearson_lower_bound,
    compare,
    gdp_lower_bound,
    one_run_fdp_lower_bound,
    one_run_lower_bound,
)
from deniable.audit.metrics import (
    ROC,
    AttackMetrics,
    attack_metrics,
    auc,
    membership_advantage,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "ROC",
    "AttackMetrics",
    "BonferroniThresholds",
    "FixedThreshold",
    "HeldOutThreshold",
    "LowerBound",
    "ThresholdStrategy",
    "attack_metrics",
    "auc",
    "clopper_pearson_lower_bound",
    "compare",
    "gdp_lower_bound",
    "membership_advantage",
    "one_run_fdp_lower_bound",
    "one_run_lower_bound",
    "roc_curve",
    "tpr_at_fpr",
]
