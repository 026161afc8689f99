"""Train by any noise placement named in the config, at the same target ε (issue #7).

DP-SGD (``dpsgd``, noise on gradients) is the trainer's own path
(:func:`deniable.train.trainer.train_private`). This module trains the other placements of
:mod:`deniable.placements` from a :class:`~deniable.config.TrainConfig` and states, for each, the
kind of guarantee it gives; they are never mixed up:

- ``pate`` (noise on the output of an ensemble, Papernot et al. 2018): teachers on disjoint
  partitions of the private training data, GNMax with σ calibrated so that the data-independent
  ε of ``pate_queries`` answers is the target, a student fitted on the answered public queries.
  The public data are the first half of the test split (unlabelled); accuracy is measured on the
  other half. Central DP of one privacy unit.
- ``label-dp`` (noise on labels, Ghazi et al. 2021): two-stage RR-with-prior; label DP only: the
  features are not protected.
- ``input`` (noise on inputs, local DP): each record's features clamped to the data-independent
  box [``input_low``, ``input_high``] with Gaussian noise, and its label by k-ary randomized
  response with ``input_label_share`` of ε; the composition of both is calibrated to the target,
  so the whole record (features and label) is ε-local-DP.
- ``output`` (noise on the trained weights, Chaudhuri et al. 2011): L2-regularised logistic
  regression on inputs projected to the unit ball, plus Gaussian noise calibrated to the
  minimiser's sensitivity. Central DP of one example.

Every fit inside a placement is non-private (Adam, ``fit_epochs``, ``fit_learning_rate``): its
input already went through the mechanism, or (teachers) it is only seen through the aggregator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from deniable.accounting.calibrate import smallest_noise
from deniable.config import Method, TrainConfig
from deniable.data import ArrayDataset, Split
from deniable.errors import DeniableError
from deniable.events import (
    ComposedEvent,
    GaussianEvent,
    Neighbouring,
    RandomizedResponseEvent,
    SelfComposedEvent,
)
from deniable.mechanisms import RandomSource, analytic_sigma
from deniable.models import build_model
from deniable.placements.fit import Fit, fit_classifier
from deniable.placements.guarantee import PrivacyClaim, claim
from deniable.placements.input_perturbation import RECORD_UNIT, gaussian_features
from deniable.placements.label_dp import randomize_labels
from deniable.placements.label_dp_training import train_label_dp
from deniable.placements.output_perturbation import output_perturbation_gaussian
from deniable.placements.pate import GNMax, train_pate
from deniable.train.trainer import accuracy

OUTPUT_MODEL = "unit-ball-logreg"
"""The model ``output`` releases (its sensitivity needs inputs in the unit ball, no bias)."""


@dataclass(frozen=True, eq=False)
class MethodOutcome:
    """A model trained by one placement, its privacy claim and its accuracies."""

    method: str
    model: nn.Module
    claim: PrivacyClaim
    test_accuracy: float
    train_accuracy: float
    evaluation: Split
    details: dict[str, object] = field(default_factory=dict)


def model_name(config: TrainConfig, method: Method | None = None) -> str:
    """The architecture ``method`` trains: the config's, but ``output`` releases a unit-ball
    linear model whatever the config says."""
    return OUTPUT_MODEL if (method or config.method) == "output" else config.model


def public_split(split: Split) -> tuple[np.ndarray, Split]:
    """PATE's public queries (the first half of the test split, labels dropped) and the split
    whose test part (the other half) every method of a comparison is evaluated on."""
    half = len(split.test) // 2
    if half < 1:
        raise DeniableError("method 'pate' needs a test split of >= 2 examples for public data")
    public = split.test.subset(np.arange(half))
    held_out = split.test.subset(np.arange(half, len(split.test)))
    return public.features, Split(train=split.train, test=held_out)


def train_method(split: Split, config: TrainConfig, method: Method | None = None) -> MethodOutcome:
    """Train ``method`` (default ``config.method``; not ``dpsgd``) on ``split.train`` at
    ``config.target_epsilon``; accuracy on ``split.test`` (its second half for ``pate``)."""
    chosen = method or config.method
    if chosen == "dpsgd":
        raise DeniableError("train dpsgd with deniable.train.trainer.train_private")
    if config.target_epsilon is None:
        raise DeniableError(f"method {chosen!r} needs target_epsilon in the config")
    rng = RandomSource.secure() if config.seed is None else RandomSource(config.seed)
    evaluation = split
    if chosen == "pate":
        public, evaluation = public_split(split)
        model, spent, details = _pate(split.train, public, config, rng)
    elif chosen == "label-dp":
        model, spent, details = _label_dp(split.train, config, rng)
    elif chosen == "input":
        model, spent, details = _input(split.train, config, rng)
    else:
        model, spent, details = _output(split.train, config, rng)
    details["secure_noise"] = rng.is_secure
    return MethodOutcome(
        method=chosen,
        model=model,
        claim=spent,
        test_accuracy=accuracy(model, evaluation.test),
        train_accuracy=accuracy(model, split.train),
        evaluation=evaluation,
        details=details,
    )


Trained = tuple[nn.Module, PrivacyClaim, dict[str, object]]


def _fit(config: TrainConfig) -> Fit:
    return Fit(
        model=config.model,
        epochs=config.fit_epochs,
        learning_rate=config.fit_learning_rate,
        batch_size=128,
        seed=config.seed or 0,
    )


def _target(config: TrainConfig) -> float:
    assert config.target_epsilon is not None
    return config.target_epsilon


def _pate(
    private: ArrayDataset, public: np.ndarray, config: TrainConfig, rng: RandomSource
) -> Trained:
    teachers = config.pate_teachers or max(2, min(250, len(private) // 50))
    queries = min(config.pate_queries, public.shape[0])
    sigma, _ = smallest_noise(
        lambda s: SelfComposedEvent(GNMax(s).query_event(private.num_classes), queries),
        _target(config),
        config.delta,
        accountant=config.accountant or "pld",
    )
    result = train_pate(
        private,
        public[:queries],
        num_teachers=teachers,
        aggregator=GNMax(sigma),
        teacher_fit=_fit(config),
        student_fit=_fit(config),
        partition_seed=config.seed or 0,
        rng=rng,
        workers=config.workers,
    )
    spent = result.epsilon(config.delta, accountant=config.accountant or "pld")
    agreement = float(np.mean(result.aggregation.labels == np.argmax(result.votes, axis=1)))
    return (
        result.student,
        spent,
        {
            "teachers": teachers,
            "queries": queries,
            "gnmax_sigma": sigma,
            "labels_matching_plurality": agreement,
            "evaluated_on": "second half of the test split (the first half is PATE's public data)",
        },
    )


def _label_dp(data: ArrayDataset, config: TrainConfig, rng: RandomSource) -> Trained:
    result = train_label_dp(
        data, epsilon=_target(config), fit=_fit(config), split_seed=config.seed or 0, rng=rng
    )
    spent = result.epsilon(config.delta, accountant=config.accountant or "pld")
    correct = float(np.mean(result.noisy_labels == data.labels))
    return result.model, spent, {"stages": len(result.releases), "labels_kept": correct}


def _input(data: ArrayDataset, config: TrainConfig, rng: RandomSource) -> Trained:
    """Local DP of whole records: k-RR labels with ``input_label_share`` of ε, Gaussian features
    at the largest ε_f whose composition with the label's RR stays within the target."""
    target = _target(config)
    label_eps = config.input_label_share * target
    k = data.num_classes
    diameter = (config.input_high - config.input_low) * math.sqrt(math.prod(data.feature_shape))
    label_event = RandomizedResponseEvent(epsilon=label_eps, num_buckets=k)
    relation = Neighbouring.REPLACE_ONE  # local DP: the record takes any other value
    accountant = config.accountant or "pld"

    def record(inverse_eps: float) -> ComposedEvent:
        sigma = analytic_sigma(epsilon=1 / inverse_eps, delta=config.delta, sensitivity=diameter)
        return ComposedEvent([GaussianEvent(sigma, diameter, diameter), label_event])

    inverse, _ = smallest_noise(
        record, target, config.delta, accountant=accountant, relation=relation
    )
    features = gaussian_features(
        data.features,
        low=config.input_low,
        high=config.input_high,
        epsilon=1 / inverse,
        delta=config.delta,
        rng=rng,
    )
    labels = randomize_labels(data.labels, num_classes=k, epsilon=label_eps, rng=rng)
    event = ComposedEvent([features.event, labels.event])
    record_claim = claim(
        event,
        config.delta,
        guarantee=features.guarantee,
        unit=f"{RECORD_UNIT}: features and label",
        accountant=accountant,
        relation=relation,
    )
    noisy = np.asarray(features.value, dtype=np.float32).reshape(data.features.shape)
    model = fit_classifier(
        noisy, labels.labels, feature_shape=data.feature_shape, num_classes=k, fit=_fit(config)
    )
    details: dict[str, object] = {
        "feature_epsilon": 1 / inverse,
        "feature_sigma": float(features.details["sigma"]),
        "l2_diameter": diameter,
        "label_epsilon": label_eps,
        "labels_kept": float(np.mean(labels.labels == data.labels)),
    }
    return model, record_claim, details


def _output(data: ArrayDataset, config: TrainConfig, rng: RandomSource) -> Trained:
    release = output_perturbation_gaussian(
        data.features,
        data.labels,
        num_classes=data.num_classes,
        regularization=config.regularization,
        epsilon=_target(config),
        delta=config.delta,
        rng=rng,
    )
    model = build_model(OUTPUT_MODEL, data.feature_shape, data.num_classes)
    weights = torch.as_tensor(np.atleast_2d(release.weights), dtype=torch.float32)
    with torch.no_grad():
        model.weight.copy_(weights)  # type: ignore[operator]
    spent = release.epsilon(config.delta, accountant=config.accountant or "pld")
    details: dict[str, object] = {
        "regularization": config.regularization,
        "sensitivity": release.sensitivity.add_remove,
        "sigma": float(release.details["sigma"]),
    }
    return model, spent, details
