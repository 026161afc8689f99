"""The trainer behind ``deniable train`` and ``deniable run``: one readable loop.

It trains a private model with :func:`~deniable.train.private.make_private` and a non-private
baseline with the same architecture, evaluates both on the test split, and records ε after every
epoch from the privacy tracker (so the curve is what the accountant says about what ran).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deniable.config import TrainConfig
from deniable.data import ArrayDataset, Split
from deniable.models import build_model
from deniable.train.augment import Augmentation
from deniable.train.checkpoint import resume, save_checkpoint
from deniable.train.clipped_sum import ghost_mode
from deniable.train.dp_step import StepStats
from deniable.train.ema import ParameterAverage
from deniable.train.private import PrivateTraining, make_private

Progress = Callable[[int, int], None]
StepHook = Callable[[int, StepStats, float | None], None]


@dataclass
class PrivateOutcome:
    """A finished private run."""

    training: PrivateTraining
    test_accuracy: float
    train_accuracy: float
    epsilon_curve: list[dict[str, float]] = field(default_factory=list)
    average: ParameterAverage | None = None
    per_sample: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        """The reported model: the parameter average when the config asks for one (``ema_decay``),
        else the last iterate."""
        model = self.training.model
        return model if self.average is None else self.average.averaged(model)


def _optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum)


def accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1024) -> float:
    """Fraction of ``data`` that ``model`` classifies correctly."""
    x, y = data.to_tensors()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(x[start : start + batch_size])
            correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
    return correct / len(y)


def train_private(
    split: Split,
    config: TrainConfig,
    *,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
    on_step: StepHook | None = None,
) -> PrivateOutcome:
    """DP-SGD on ``split.train`` as ``config`` says; ε recorded after every epoch.

    ``on_step(step, stats, epsilon)`` is called after every step (``epsilon`` where the curve
    records one, else None), e.g. by a :class:`deniable.tracking.StepLogger`.
    """
    if config.seed is not None:
        torch.manual_seed(config.seed)
    model = build_model(config.model, split.feature_shape, split.num_classes)
    optimizer = _optimizer(model, config, config.learning_rate)
    x, y = split.train.to_tensors()
    training = make_private(
        model,
        optimizer,
        nn.functional.cross_entropy,
        x,
        y,
        batch_size=config.batch_size,
        max_grad_norm=config.max_grad_norm,
        noise_multiplier=config.noise_multiplier,
        target_epsilon=config.target_epsilon,
        delta=config.delta,
        epochs=config.epochs,
        keys=split.train.keys,
        fixed_size_batches=config.sampling == "fixed",
        per_layer_clipping=config.per_layer_clipping,
        microbatch_size=config.microbatch_size,
        physical_batch_size=config.physical_batch_size,
        seed=config.seed,
        augmentation=augmentation(config),
        compiled=config.compile,
        ghost_two_pass=config.ghost_two_pass,
    )
    total = math.ceil(config.epochs / training.sample_rate)
    per_epoch = training.steps_per_epoch
    average = None if config.ema_decay is None else ParameterAverage(model, config.ema_decay)
    outcome = PrivateOutcome(training, 0.0, 0.0, average=average)
    saved_config = config.model_dump(mode="json")
    if checkpoint is not None and checkpoint.exists():
        extra = resume(checkpoint, training)
        curve = extra.get("epsilon_curve", [])
        assert isinstance(curve, list)
        outcome.epsilon_curve = curve
        if average is not None:
            average.load_state_dict(extra["ema"])  # type: ignore[arg-type]
    remaining = total - training.steps_done
    for batch in training.batches(steps=remaining) if remaining > 0 else ():
        stats = training.step(batch)
        outcome.per_sample = {"method": stats.method, "layers": dict(stats.layer_methods)}
        if stats.method == "ghost":
            outcome.per_sample["ghost"] = ghost_mode(model, config.ghost_two_pass)
        if average is not None:
            average.update(model)
        done = training.steps_done
        if progress is not None:
            progress(done, total)
        spent: float | None = None
        if done % per_epoch == 0 or done == total:
            spent = training.epsilon(config.delta, config.accountant).epsilon
            outcome.epsilon_curve.append(
                {"step": done, "epoch": done * training.sample_rate, "epsilon": spent}
            )
        if on_step is not None:
            on_step(done, stats, spent)
        every = config.checkpoint_every
        if checkpoint is not None and every and done % every == 0:
            save_checkpoint(checkpoint, training, saved_config, _extra(outcome))
    if checkpoint is not None:
        save_checkpoint(checkpoint, training, saved_config, _extra(outcome))
    reported = outcome.model
    outcome.test_accuracy = accuracy(reported, split.test)
    outcome.train_accuracy = accuracy(reported, split.train)
    return outcome


def augmentation(config: TrainConfig) -> Augmentation | None:
    """The config's augmentation multiplicity, or None for plain DP-SGD."""
    if config.augmentation == "none" and config.augmentation_multiplicity == 1:
        return None
    return Augmentation(
        config.augmentation, config.augmentation_multiplicity, config.augmentation_pad
    )


def _extra(outcome: PrivateOutcome) -> dict[str, object]:
    """What a checkpoint carries besides the training state: the ε curve, and with averaging
    the average's state and the reported (averaged) model for audits and evaluations."""
    extra: dict[str, object] = {"epsilon_curve": outcome.epsilon_curve}
    if outcome.average is not None:
        extra["ema"] = outcome.average.state_dict()
        extra["reported_model"] = outcome.average.average
    return extra


def train_baseline(split: Split, config: TrainConfig) -> tuple[nn.Module, float, float]:
    """The same model trained without privacy (shuffled minibatches, no clipping, no noise).

    Returns (model, test accuracy, train accuracy).
    """
    if config.seed is not None:
        torch.manual_seed(config.seed)
    model = build_model(config.model, split.feature_shape, split.num_classes)
    optimizer = _optimizer(model, config, config.baseline_learning_rate)
    x, y = split.train.to_tensors()
    rng = np.random.default_rng(config.seed)
    epochs = math.ceil(config.baseline_epochs or config.epochs)
    model.train()
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(y)))
        for start in range(0, len(y), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model, accuracy(model, split.test), accuracy(model, split.train)
