"""The audit stage of the main job: what leaks, measured, beside what the accountant claims.

Two measurements, both from :mod:`deniable.audit`:

1. **One-run canary audit** (Steinke, Nasr & Jagielski 2023) of the *training algorithm*: m
   out-of-distribution canaries (uniform random inputs with random labels) are each added to the
   training set with probability 1/2, the model is trained with the run's own settings, and the
   canaries' scores give an ε lower bound at a stated confidence, including δ. The same audit of
   the non-private algorithm shows the attack has power: a bound near 0 for DP means little
   unless the same audit finds leakage without DP.
2. **LOSS membership inference** (Yeom et al. 2018) on the *reported* model: training examples
   against test examples; AUC, TPR at 1 %, 0.1 % and 0 % FPR, and the membership advantage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from deniable.audit.bounds import one_run_lower_bound
from deniable.audit.bounds_result import LowerBound
from deniable.audit.canaries import (
    CanarySet,
    canary_scores,
    random_input_canaries,
    with_canaries,
)
from deniable.audit.metrics import AttackMetrics, attack_metrics
from deniable.config import TrainConfig
from deniable.data import ArrayDataset, Split
from deniable.train.trainer import train_baseline, train_private

DEFAULT_CANARIES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class CanaryAudit:
    """A one-run audit of one training algorithm."""

    bound: LowerBound
    claimed_epsilon: float | None
    canaries: int
    included: int
    test_accuracy: float

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["bound"] = self.bound.to_dict()
        return out


@dataclass(frozen=True)
class AuditOutcome:
    private: CanaryAudit
    non_private: CanaryAudit | None
    loss_attack: AttackMetrics
    loss_scores: np.ndarray
    loss_is_member: np.ndarray

    @property
    def epsilon_lower_bound(self) -> float:
        return self.private.bound.epsilon

    def to_dict(self) -> dict[str, object]:
        return {
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "confidence": self.private.bound.confidence,
            "private": self.private.to_dict(),
            "non_private": None if self.non_private is None else self.non_private.to_dict(),
            "loss_attack_on_reported_model": asdict(self.loss_attack),
        }


def per_example_losses(model: nn.Module, data: ArrayDataset, batch_size: int = 1024) -> np.ndarray:
    """Cross-entropy of every example of ``data`` under ``model``."""
    x, y = data.to_tensors()
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            part = slice(start, start + batch_size)
            out.append(nn.functional.cross_entropy(model(x[part]), y[part], reduction="none"))
    return torch.cat(out).numpy().astype(np.float64)


def loss_attack_scores(model: nn.Module, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """LOSS attack (score = −loss): scores and membership for ``split.train`` ∪ ``split.test``."""
    members = per_example_losses(model, split.train)
    others = per_example_losses(model, split.test)
    scores = -np.concatenate([members, others])
    labels = np.concatenate([np.ones(members.size, bool), np.zeros(others.size, bool)])
    return scores, labels


def canary_audit(
    split: Split, config: TrainConfig, canaries: CanarySet, *, private: bool
) -> CanaryAudit:
    """Train with the included canaries (the run's method, or without privacy) and bound ε from
    the canary scores."""
    audited = Split(train=with_canaries(split.train, canaries), test=split.test)
    claimed: float | None
    if private and config.method != "dpsgd":
        from deniable.methods import train_method

        trained = train_method(audited, config)
        model, accuracy, claimed = trained.model, trained.test_accuracy, trained.claim.epsilon
    elif private:
        outcome = train_private(audited, config)
        model, accuracy = outcome.training.model, outcome.test_accuracy
        claimed = outcome.training.epsilon(config.delta, config.accountant).epsilon
    else:
        model, accuracy, _ = train_baseline(audited, config)
        claimed = None
    scores = canary_scores(model, canaries)
    bound = one_run_lower_bound(
        scores, canaries.included, delta=config.delta, confidence=CONFIDENCE
    )
    return CanaryAudit(bound, claimed, len(canaries), int(canaries.included.sum()), accuracy)


def audit(
    split: Split,
    config: TrainConfig,
    reported_model: nn.Module,
    *,
    canaries: int = DEFAULT_CANARIES,
    non_private: bool = True,
) -> AuditOutcome:
    """The whole audit stage for a run (see the module docstring)."""
    canary_set = random_input_canaries(
        split.feature_shape, split.num_classes, canaries, seed=(config.seed or 0) + 7919
    )
    private_audit = canary_audit(split, config, canary_set, private=True)
    baseline_audit = canary_audit(split, config, canary_set, private=False) if non_private else None
    scores, is_member = loss_attack_scores(reported_model, split)
    return AuditOutcome(
        private_audit, baseline_audit, attack_metrics(scores, is_member), scores, is_member
    )
