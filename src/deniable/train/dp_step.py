"""The DP-SGD step (Abadi et al. 2016) as named phases: clip, sum, noise, scale.

For a logical batch B drawn by the sampler, with per-unit gradients g_u:

    ĝ = ( Σ_{u∈B} clip_C(g_u) + N(0, σ²C²·I) ) / (q·U)

where clip_C scales g_u to norm ≤ C, σ is the noise multiplier and q·U the *expected* number of
units per batch (dividing by the realised |B| would leak |B|). Noise is added once per logical
step, however many physical chunks the batch is processed in (virtual steps), so memory bounds
never change the privacy.

The step emits the event that describes it, from its own settings: the clipped sum has L2
sensitivity C per privacy unit (a unit's whole contribution is clipped, see
:mod:`deniable.grad.clip`). With microbatches of a fixed partition of the examples, the unit
stays the example but one example moves its microbatch's clipped sum by up to 2C, so the event
states sensitivity 2C: claiming C there is the textbook pitfall this makes impossible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from deniable.events import GaussianEvent
from deniable.train.clipped_sum import Clipping, LossFn, clipped_sum, ghost_pays_off
from deniable.train.noise import NoiseSource

__all__ = [
    "Clipping",
    "LossFn",
    "StepStats",
    "ghost_pays_off",
    "noisy_gradient",
    "step_event",
]


@dataclass(frozen=True)
class StepStats:
    """What one step did. These numbers are computed on the batch WITHOUT noise (the realised
    number of units, the clipped fraction, the mean loss): diagnostics for the data owner that ε
    does not cover; do not release them."""

    units: int
    clipped_fraction: float
    loss: float
    method: str = "vmap"
    layer_methods: dict[str, str] = field(default_factory=dict)


def noisy_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    units: torch.Tensor,
    *,
    clipping: Clipping,
    noise_multiplier: float,
    expected_batch_units: float,
    noise: NoiseSource,
    physical_batch_units: int | None = None,
    compiled: bool = False,
    ghost_two_pass: bool = False,
) -> tuple[dict[str, torch.Tensor], StepStats]:
    """ĝ for one logical batch. ``units`` gives each example's privacy unit (any integers).

    The batch is processed in chunks of at most ``physical_batch_units`` units (every example of
    a unit in the same chunk); noise is added once, after all chunks.
    """
    total = clipped_sum(
        model,
        loss_fn,
        inputs,
        targets,
        units,
        clipping=clipping,
        physical_batch_units=physical_batch_units,
        compiled=compiled,
        ghost_two_pass=ghost_two_pass,
    )
    std = noise_multiplier * clipping.max_grad_norm
    # The noise std is σ·C whatever the sensitivity: the event (step_event) states the
    # sensitivity, so the accountant sees noise multiplier σ·C/sensitivity.
    out = {
        name: (value + noise.gaussian_like(value, std)) / expected_batch_units
        for name, value in total.summed.items()
    }
    count = total.units
    clipped = total.clipped_units / count if count else 0.0
    mean_loss = total.loss_total / max(1, total.examples)
    return out, StepStats(count, clipped, mean_loss, total.method, total.layer_methods)


def step_event(clipping: Clipping, noise_multiplier: float) -> GaussianEvent:
    """The Gaussian event of one step: noise σ·C on a sum with the clipping's sensitivity."""
    return GaussianEvent(
        sigma=noise_multiplier * clipping.max_grad_norm, sensitivity=clipping.sensitivity
    )


def as_unit_tensor(units: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(units, dtype=torch.long)
