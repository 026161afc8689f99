"""Multi-stage training with RR-with-prior (Ghazi et al. 2021, "Deep learning with label
differential privacy", Alg. 3).

The training set is cut at random into stages. Stage 1 randomizes its labels with plain k-ary RR
(RR-with-prior under the uniform prior); a model is fitted on them. Every later stage takes as
prior that model's softmax on its own examples, randomizes its labels with
:func:`~deniable.placements.label_dp.rr_with_prior`, and a new model is fitted on all randomized
labels so far. The last model is the result.

Privacy (label DP, neighbours differ in one example's label): each label is randomized exactly
once, in its own stage. The prior of stage t is a function of the public features and of the
randomized labels of earlier stages only, so for two neighbouring label vectors the stages before
the changed label's are identically distributed, its stage differs in that one report, and all
later computation is post-processing. By this parallel composition the whole run (the noisy
labels and every model) is as private as the worst single report: ε is the max over stages, not
the sum, and the run's event is the stages' worst event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import InvalidParameterError, check_positive
from deniable.events import Neighbouring, NoOpEvent, PrivacyEvent, RandomizedResponseEvent
from deniable.mechanisms import RandomSource
from deniable.mechanisms._inputs import source
from deniable.placements.fit import Fit, fit_classifier, predict_proba
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim
from deniable.placements.label_dp import (
    LABEL_UNIT,
    LabelRelease,
    randomize_labels,
    rr_with_prior,
)


@dataclass(frozen=True, eq=False)
class LabelDpTraining:
    """The result of multi-stage label-DP training: the final ``model``, the randomized
    ``noisy_labels`` (aligned with the training data), the ``stage`` of each example, each
    stage's :class:`LabelRelease`, and the run's ``event``. ``guarantee`` is ``label-dp``."""

    model: nn.Module
    noisy_labels: NDArray[np.int64]
    stage: NDArray[np.int64]
    releases: tuple[LabelRelease, ...]
    event: PrivacyEvent
    secure: bool
    guarantee: Guarantee = Guarantee.LABEL_DP

    def epsilon(self, delta: float, *, accountant: str = "pld") -> PrivacyClaim:
        """Label-DP ε of the whole run (the worst stage's, by parallel composition)."""
        return claim(
            self.event,
            delta,
            guarantee=self.guarantee,
            unit=LABEL_UNIT,
            accountant=accountant,
            relation=Neighbouring.REPLACE_ONE,
        )


def train_label_dp(
    data: ArrayDataset,
    *,
    epsilon: float,
    stage_fractions: tuple[float, ...] = (0.4, 0.6),
    fit: Fit,
    split_seed: int = 0,
    rng: RandomSource | None = None,
) -> LabelDpTraining:
    """Multi-stage RR-with-prior training of ``fit.model`` on ``data`` at ε-label-DP.

    ``stage_fractions`` (positive, summing to 1) size the stages; the split into stages uses
    ``split_seed`` and is independent of the labels. One stage is plain randomized response.
    """
    eps = check_positive("epsilon", epsilon)
    fractions = np.asarray(stage_fractions, dtype=float)
    if fractions.ndim != 1 or fractions.size < 1 or np.any(fractions <= 0):
        raise InvalidParameterError("stage_fractions", stage_fractions, "positive fractions")
    if not np.isclose(fractions.sum(), 1.0):
        raise InvalidParameterError("stage_fractions", stage_fractions, "fractions summing to 1")
    n = len(data)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    if np.any(np.diff(np.concatenate([[0], bounds])) < 1):
        raise InvalidParameterError("stage_fractions", stage_fractions, f"stages of >= 1 of {n}")
    src = source(rng)
    order = np.random.default_rng(split_seed).permutation(n)
    stage = np.empty(n, dtype=np.int64)
    for s, (lo, hi) in enumerate(zip(np.concatenate([[0], bounds[:-1]]), bounds, strict=True)):
        stage[order[lo:hi]] = s
    noisy = np.full(n, -1, dtype=np.int64)
    releases: list[LabelRelease] = []
    model: nn.Module | None = None
    for s in range(fractions.size):
        rows = np.flatnonzero(stage == s)
        if model is None:
            release = randomize_labels(
                data.labels[rows], num_classes=data.num_classes, epsilon=eps, rng=src
            )
        else:
            prior = predict_proba(model, data.features[rows])
            release = rr_with_prior(data.labels[rows], prior, epsilon=eps, rng=src)
        noisy[rows] = release.labels
        releases.append(release)
        seen = np.flatnonzero(noisy >= 0)
        model = fit_classifier(
            data.features[seen],
            noisy[seen],
            feature_shape=data.feature_shape,
            num_classes=data.num_classes,
            fit=fit,
            seed_offset=s,
        )
    assert model is not None
    return LabelDpTraining(
        model=model,
        noisy_labels=noisy,
        stage=stage,
        releases=tuple(releases),
        event=_worst(releases),
        secure=src.is_secure,
    )


def _worst(releases: list[LabelRelease]) -> PrivacyEvent:
    """The event dominating every stage's (parallel composition): RR with the smallest k."""
    rr = [r.event for r in releases if isinstance(r.event, RandomizedResponseEvent)]
    others = [
        r.event for r in releases if not isinstance(r.event, RandomizedResponseEvent | NoOpEvent)
    ]
    if others:
        raise AssertionError(f"unexpected label events {others!r}")
    if not rr:
        return NoOpEvent()
    if len({e.epsilon for e in rr}) != 1:
        raise AssertionError("stages with different epsilons")
    return min(rr, key=lambda e: e.num_buckets)
