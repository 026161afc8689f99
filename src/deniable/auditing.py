"""The audit stage of the main job: what leaks, measured, beside what the accountant claims.

Two measurements, both from :mod:`deniable.audit`:

1. **One-run canary audit** (Steinke, Nasr & Jagielski 2023) of the *training algorithm*: m
   out-of-distribution canaries (uniform random inputs with random labels) are each added to the
   training set with probability 1/2, the model is trained with the run's own settings, and the
   canaries' scores give an ε lower bound at a stated confidence, including δ. The same audit of
   the non-private algorithm shows the attack has power: a bound near 0 for DP means little
   unless the same audit finds leakage without DP. Beside it, ``bound_if_gaussian``: the same
   guesses analysed with the f-DP bound of Mahloujifar et al. (tighter, but a lower bound only
   under the hypothesis that the algorithm is μ-GDP; the headline stays the Steinke bound,
   which holds for any (ε, δ) mechanism).
2. **LOSS membership inference** (Yeom et al. 2018) on the *reported* model: training examples
   against test examples; AUC, TPR at 1 %, 0.1 % and 0 % FPR, and the membership advantage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from deniable.audit.bounds import one_run_fdp_lower_bound, one_run_lower_bound
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
from deniable.train.trainer import Progress, train_baseline, train_private

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
    bound_if_gaussian: LowerBound | None = None
    model: nn.Module | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bound": self.bound.to_dict(),
            "claimed_epsilon": self.claimed_epsilon,
            "canaries": self.canaries,
            "included": self.included,
            "test_accuracy": self.test_accuracy,
        }
        if self.bound_if_gaussian is not None:
            out["bound_if_gaussian"] = self.bound_if_gaussian.to_dict()
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
    split: Split,
    config: TrainConfig,
    canaries: CanarySet,
    *,
    private: bool,
    progress: Progress | None = None,
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
        outcome = train_private(audited, config, progress=progress)
        model, accuracy = outcome.model, outcome.test_accuracy
        claimed = outcome.training.epsilon(config.delta, config.accountant).epsilon
    else:
        model, accuracy, _ = train_baseline(audited, config)
        claimed = None
    scores = canary_scores(model, canaries)
    bound = one_run_lower_bound(
        scores, canaries.included, delta=config.delta, confidence=CONFIDENCE
    )
    gaussian = one_run_fdp_lower_bound(
        scores, canaries.included, delta=config.delta, confidence=CONFIDENCE
    )
    included = int(canaries.included.sum())
    return CanaryAudit(bound, claimed, len(canaries), included, accuracy, gaussian, model)


def audit(
    split: Split,
    config: TrainConfig,
    reported_model: nn.Module | None = None,
    *,
    canaries: int = DEFAULT_CANARIES,
    non_private: bool = True,
    progress: Progress | None = None,
) -> AuditOutcome:
    """The whole audit stage for a run (see the module docstring). Without a
    ``reported_model`` (auditing a config before any release), the LOSS attack targets the
    model the private canary run trained (the real training examples are all members of it).
    ``progress(done, total)`` follows the private canary run's steps."""
    canary_set = random_input_canaries(
        split.feature_shape, split.num_classes, canaries, seed=(config.seed or 0) + 7919
    )
    private_audit = canary_audit(split, config, canary_set, private=True, progress=progress)
    baseline_audit = canary_audit(split, config, canary_set, private=False) if non_private else None
    target = reported_model if reported_model is not None else private_audit.model
    assert target is not None
    scores, is_member = loss_attack_scores(target, split)
    return AuditOutcome(
        private_audit, baseline_audit, attack_metrics(scores, is_member), scores, is_member
    )
