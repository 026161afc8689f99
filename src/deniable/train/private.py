"""Attach DP-SGD to your own model, optimizer and loop in three lines.

    private = make_private(model, optimizer, loss_fn, x, y, batch_size=256,
                           max_grad_norm=1.0, target_epsilon=3.0, delta=1e-5, epochs=10)
    for batch in private.batches(epochs=10):
        private.step(batch)
    private.epsilon(1e-5)

The sampler, the clipping, the noise and the accounting are built together here, so they cannot
disagree: batches come from the sampler the accountant assumes (Poisson by default), each step
records the event it actually performed, and ε is computed from those events.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from deniable.accounting import calibrate
from deniable.accounting.result import EpsilonResult
from deniable.errors import (
    DeniableError,
    InvalidParameterError,
    check_count,
    check_delta,
    check_positive,
)
from deniable.events import PrivacyEvent, SelfComposedEvent
from deniable.train.augment import Augmentation
from deniable.train.dp_step import Clipping, LossFn, StepStats, noisy_gradient, step_event
from deniable.train.noise import NoiseSource
from deniable.train.privacy_tracker import PrivacyTracker
from deniable.train.sampler import FixedSizeSampler, PoissonSampler, Sampler, UnitIndex
from deniable.train.validate import validate_model


@dataclass(frozen=True)
class Batch:
    """A logical batch drawn by the training's own sampler (``step`` numbers it)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    units: torch.Tensor
    step: int


class PrivateTraining:
    """State of a private training run: model, optimizer, sampler, noise and privacy spent."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        units: UnitIndex,
        sampler: Sampler,
        clipping: Clipping,
        noise_multiplier: float,
        noise: NoiseSource,
        unit_name: str = "example",
        physical_batch_units: int | None = None,
        augmentation: Augmentation | None = None,
        augmentation_seed: int = 0,
        compiled: bool = False,
        ghost_two_pass: bool = False,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.inputs = inputs
        self.targets = targets
        self.units = units
        self.sampler = sampler
        self.clipping = clipping
        self.noise_multiplier = noise_multiplier
        self.noise = noise
        self.physical_batch_units = physical_batch_units
        self.augmentation = augmentation
        self.compiled = compiled
        self.ghost_two_pass = ghost_two_pass
        self._augment_rng = torch.Generator().manual_seed(augmentation_seed)
        self.tracker = PrivacyTracker(sampler.relation, unit_name)
        self.steps_done = 0
        self._drawn = 0

    @property
    def sample_rate(self) -> float:
        return self.sampler.sample_rate

    @property
    def steps_per_epoch(self) -> int:
        return max(1, round(1 / self.sample_rate))

    def step_event(self) -> PrivacyEvent:
        """The event one step of this training performs (sampling included)."""
        return self.sampler.event(step_event(self.clipping, self.noise_multiplier))

    def batches(self, *, epochs: float | None = None, steps: int | None = None) -> Iterator[Batch]:
        """Batches from the sampler, for ``steps`` steps or ``epochs`` · (1/q) steps."""
        if (epochs is None) == (steps is None):
            raise DeniableError("give exactly one of epochs or steps")
        total = steps if steps is not None else math.ceil((epochs or 0) / self.sample_rate)
        for _ in range(check_count("steps", total)):
            chosen = self.sampler.sample()
            index = torch.as_tensor(self.units.examples_of(chosen), dtype=torch.long)
            unit_ids = torch.as_tensor(self.units.unit_of_example[index.numpy()], dtype=torch.long)
            self._drawn += 1
            yield Batch(self.inputs[index], self.targets[index], unit_ids, self._drawn - 1)

    def step(self, batch: Batch) -> StepStats:
        """One DP-SGD step on ``batch``: record the event, then update the model."""
        if batch.step != self.steps_done:
            raise DeniableError(
                f"batch {batch.step} is not the next batch ({self.steps_done}); "
                "take batches from this training's batches() in order"
            )
        self.model.train()
        inputs, targets, units, loss_fn = batch.inputs, batch.targets, batch.units, self.loss_fn
        copies = 1 if self.augmentation is None else self.augmentation.multiplicity
        if self.augmentation is not None:
            inputs, targets, units = self.augmentation.expand(
                inputs, targets, units, self._augment_rng
            )
            # each unit's gradient is then the mean over its K copies (see train.augment)
            loss_fn = _scaled_loss(self.loss_fn, 1.0 / copies)
        grads, stats = noisy_gradient(
            self.model,
            loss_fn,
            inputs,
            targets,
            units,
            clipping=self.clipping,
            noise_multiplier=self.noise_multiplier,
            expected_batch_units=self.sampler.expected_batch_units,
            noise=self.noise,
            physical_batch_units=self.physical_batch_units,
            compiled=self.compiled,
            ghost_two_pass=self.ghost_two_pass,
        )
        if copies > 1:
            stats = replace(stats, loss=stats.loss * copies)
        self.tracker.record(self.step_event())
        for name, param in self.model.named_parameters():
            if name in grads:
                param.grad = grads[name]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return stats

    def epsilon(self, delta: float, accountant: str | None = None) -> EpsilonResult:
        """ε spent so far, from the recorded events."""
        return self.tracker.epsilon(delta, accountant or default_accountant(self.sampler))

    def state_dict(self) -> dict[str, object]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "noise": self.noise.state_dict(),
            "tracker": self.tracker.state_dict(),
            "steps_done": self.steps_done,
            "augmentation_rng": self._augment_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.sampler.load_state_dict(state["sampler"])  # type: ignore[arg-type]
        self.noise.load_state_dict(state["noise"])  # type: ignore[arg-type]
        self.tracker.load_state_dict(state["tracker"])  # type: ignore[arg-type]
        if "augmentation_rng" in state:
            self._augment_rng.set_state(state["augmentation_rng"])  # type: ignore[arg-type]
        steps = state["steps_done"]
        assert isinstance(steps, int)
        self.steps_done = steps
        self._drawn = steps


def _scaled_loss(loss_fn: LossFn, factor: float) -> LossFn:
    def scaled(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss_fn(outputs, targets) * factor

    return scaled


def default_accountant(sampler: Sampler) -> str:
    """PLD for Poisson sampling; RDP for fixed-size batches (the PLD has no rule for them)."""
    return "pld" if isinstance(sampler, PoissonSampler) else "rdp"


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float | None = None,
    epochs: float | None = None,
    keys: np.ndarray | None = None,
    fixed_size_batches: bool = False,
    per_layer_clipping: bool = False,
    microbatch_size: int | None = None,
    physical_batch_size: int | None = None,
    seed: int | None = None,
    allow_unverified_layers: bool = False,
    augmentation: Augmentation | None = None,
    compiled: bool = False,
    ghost_two_pass: bool = False,
) -> PrivateTraining:
    """Build a :class:`PrivateTraining` over in-memory tensors.

    ``batch_size`` is the expected number of privacy units per batch (q = batch_size / U).
    Give ``noise_multiplier``, or ``target_epsilon`` with ``delta`` and ``epochs`` to calibrate
    it. ``keys`` (one per example) makes the privacy unit the key (user-level DP).
    ``seed=None`` draws sampling and noise seeds from the OS CSPRNG (secure mode).
    ``augmentation`` (:class:`~deniable.train.augment.Augmentation`) turns on augmentation
    multiplicity: same event, each unit's gradient the mean over its augmented copies.
    ``compiled=True`` runs the per-example gradients and clipping through ``torch.compile``
    (:mod:`deniable.grad.compiled`): the same step, faster on long runs after a compilation.
    ``ghost_two_pass=True`` makes ghost clipping compute norms during a first backward and the
    clipped sum in a second: the same sum in about a non-private step's memory, more time.
    """
    units = checked_units(model, inputs, targets, keys, batch_size, allow_unverified_layers)
    count = units.num_units
    sampler_seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little")
    sampler: Sampler = (
        FixedSizeSampler(count, batch_size, seed=sampler_seed)
        if fixed_size_batches
        else PoissonSampler(count, batch_size / count, seed=sampler_seed)
    )
    clipping = Clipping(max_grad_norm, per_layer_clipping, microbatch_size)
    sigma = resolve_noise_multiplier(
        noise_multiplier, target_epsilon, delta, epochs, sampler, clipping
    )
    return PrivateTraining(
        model,
        optimizer,
        loss_fn,
        inputs,
        targets,
        units=units,
        sampler=sampler,
        clipping=clipping,
        noise_multiplier=sigma,
        noise=NoiseSource(None if seed is None else seed + 1),
        unit_name="example" if keys is None else "key",
        physical_batch_units=physical_batch_size,
        augmentation=augmentation,
        augmentation_seed=sampler_seed + 2,
        compiled=compiled,
        ghost_two_pass=ghost_two_pass,
    )


def checked_units(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    keys: np.ndarray | None,
    batch_size: int,
    allow_unverified_layers: bool,
) -> UnitIndex:
    """Validate the model and the data for DP training; the privacy units of the examples."""
    validate_model(model, allow_unverified=allow_unverified_layers)
    n = int(inputs.shape[0])
    if n == 0 or targets.shape[0] != n:
        raise DeniableError(f"inputs and targets must be non-empty and equal in length: {n}")
    units = UnitIndex.from_keys(keys, n)
    count = units.num_units
    check_count("batch_size", batch_size)
    if batch_size > count:
        raise InvalidParameterError("batch_size", batch_size, f"<= the number of units ({count})")
    return units


def resolve_noise_multiplier(
    noise_multiplier: float | None,
    target_epsilon: float | None,
    delta: float | None,
    epochs: float | None,
    sampler: Sampler,
    clipping: Clipping,
) -> float:
    """σ as given, or the smallest σ for which ``epochs`` of steps with this sampler and clipping
    spend at most ``target_epsilon`` at ``delta`` (the sampler's accountant and relation)."""
    if noise_multiplier is not None:
        if target_epsilon is not None:
            raise DeniableError("give noise_multiplier or target_epsilon, not both")
        return check_positive("noise_multiplier", noise_multiplier)
    if target_epsilon is None or delta is None or epochs is None:
        raise DeniableError(
            "give noise_multiplier, or target_epsilon with delta and epochs to calibrate it"
        )
    check_delta(delta)
    steps = math.ceil(epochs / sampler.sample_rate)
    sigma, _ = calibrate.smallest_noise(
        lambda z: SelfComposedEvent(sampler.event(step_event(clipping, z)), steps),
        target_epsilon,
        delta,
        accountant=default_accountant(sampler),
        relation=sampler.relation,
    )
    return sigma
