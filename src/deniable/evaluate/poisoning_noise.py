"""Poisoning success against the noise level: train clean and poisoned, private and not.

For each noise multiplier σ, DP-SGD (:func:`~deniable.train.trainer.train_private`, the same
config otherwise) trains one model on the clean split and one on the poisoned split; the
attack's success on each, the poisoned run's (ε, δ) from its accountant, and group privacy for
the poison's group size give one :class:`~deniable.evaluate.poisoning.PoisoningAssessment`
per level. The non-private baseline (:func:`~deniable.train.trainer.train_baseline`, ε = ∞)
comes first when asked for. Each level costs two training runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from deniable.config import TrainConfig
from deniable.data import Split
from deniable.errors import DeniableError, check_positive
from deniable.evaluate._common import json_number
from deniable.evaluate.poisoning import PoisonedData, PoisoningAssessment, assess_poisoning
from deniable.events import Neighbouring
from deniable.train.trainer import train_baseline, train_private

SuccessFn = Callable[[nn.Module], float]
"""The attack's success rate on a trained model, e.g.
``lambda m: backdoor_success_rate(m, split.test, target, trigger)``."""


@dataclass(frozen=True)
class NoiseLevel:
    """One noise level: σ (``None`` for the non-private baseline), the test accuracy of the clean
    and the poisoned model, and the assessment of the attack against the poisoned run's ε."""

    noise_multiplier: float | None
    clean_accuracy: float
    poisoned_accuracy: float
    assessment: PoisoningAssessment

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (ε = ∞ for the baseline is written as ``null``)."""
        group = self.assessment.group
        return {
            "noise_multiplier": self.noise_multiplier,
            "epsilon": json_number(group.epsilon),
            "delta": group.delta,
            "clean_accuracy": self.clean_accuracy,
            "poisoned_accuracy": self.poisoned_accuracy,
            **self.assessment.to_dict(),
        }


def poisoning_vs_noise(
    split: Split,
    poisoned: PoisonedData,
    config: TrainConfig,
    noise_multipliers: Sequence[float],
    success: SuccessFn,
    *,
    include_baseline: bool = True,
) -> list[NoiseLevel]:
    """Train on ``split`` and on ``poisoned`` (its training part) at each σ; assess the attack.

    ``poisoned.data`` must be a poisoned version of ``split.train``; ``split.test`` evaluates both.
    """
    if poisoned.data.feature_shape != split.feature_shape:
        raise DeniableError("the poisoned data's feature shape differs from the split's")
    attacked = Split(train=poisoned.data, test=split.test)
    levels: list[float | None] = [None] if include_baseline else []
    levels += [check_positive("noise_multipliers", s) for s in noise_multipliers]
    if not levels:
        raise DeniableError("give at least one noise multiplier (or include_baseline=True)")
    out = []
    for sigma in levels:
        clean = _train(split, config, sigma)
        bad = _train(attacked, config, sigma)
        out.append(
            NoiseLevel(
                noise_multiplier=sigma,
                clean_accuracy=clean.test_accuracy,
                poisoned_accuracy=bad.test_accuracy,
                assessment=assess_poisoning(
                    poisoned,
                    epsilon=bad.epsilon,
                    delta=bad.delta,
                    clean_success=success(clean.model),
                    poisoned_success=success(bad.model),
                    relation=bad.relation,
                ),
            )
        )
    return out


@dataclass(frozen=True, eq=False)
class _Trained:
    model: nn.Module
    test_accuracy: float
    epsilon: float
    delta: float
    relation: Neighbouring


def _train(split: Split, config: TrainConfig, sigma: float | None) -> _Trained:
    """DP-SGD at noise multiplier ``sigma`` (ε from its accountant), or the baseline (ε = ∞)."""
    if sigma is None:
        model, test_accuracy, _ = train_baseline(split, config)
        return _Trained(model, test_accuracy, math.inf, 0.0, Neighbouring.ADD_REMOVE)
    settings = {**config.model_dump(), "noise_multiplier": sigma, "target_epsilon": None}
    run = train_private(split, TrainConfig.model_validate(settings))
    spent = run.training.epsilon(config.delta, config.accountant)
    return _Trained(
        run.model, run.test_accuracy, spent.epsilon, spent.delta, spent.relation
    )
