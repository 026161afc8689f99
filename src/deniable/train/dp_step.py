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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deniable.errors import InvalidParameterError, UnsupportedModuleError, check_positive
from deniable.events import GaussianEvent
from deniable.grad.clip import ClipResult, clip_and_sum
from deniable.grad.ghost import check_ghost_supported, ghost_clipped_sum
from deniable.grad.per_sample import compute_per_sample
from deniable.train.noise import NoiseSource

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Clipping:
    """How contributions are bounded. ``microbatch_size`` groups examples i // size (a fixed
    partition) and doubles the sensitivity; ``per_layer`` clips each parameter tensor to
    C/sqrt(L), which keeps the total at most C."""

    max_grad_norm: float
    per_layer: bool = False
    microbatch_size: int | None = None

    def __post_init__(self) -> None:
        check_positive("max_grad_norm", self.max_grad_norm)
        if self.microbatch_size is not None and self.microbatch_size < 1:
            raise InvalidParameterError("microbatch_size", self.microbatch_size, "an integer >= 1")

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity of the clipped sum to one privacy unit (add/remove-one)."""
        if self.microbatch_size is not None and self.microbatch_size > 1:
            return 2.0 * self.max_grad_norm
        return self.max_grad_norm


@dataclass(frozen=True)
class StepStats:
    """What one step did (no private information beyond what DP releases)."""

    units: int
    clipped_fraction: float
    loss: float
    method: str = "vmap"


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
) -> tuple[dict[str, torch.Tensor], StepStats]:
    """ĝ for one logical batch. ``units`` gives each example's privacy unit (any integers).

    The batch is processed in chunks of at most ``physical_batch_units`` units (every example of
    a unit in the same chunk); noise is added once, after all chunks.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    summed = {n: torch.zeros_like(p) for n, p in params.items()}
    group = units if clipping.microbatch_size is None else units // clipping.microbatch_size
    unique = torch.unique(group)
    clipped = 0.0
    loss_total = 0.0
    method = "vmap"
    for chunk in _chunks(unique, physical_batch_units):
        mask = torch.isin(group, chunk)
        one_per_unit = int(mask.sum()) == chunk.numel()
        result: ClipResult
        if one_per_unit and not clipping.per_layer and ghost_pays_off(model):
            ghost = ghost_clipped_sum(
                model, loss_fn, inputs[mask], targets[mask], clipping.max_grad_norm
            )
            result, losses, method = ghost, ghost.losses, "ghost"
        else:
            per_unit = compute_per_sample(
                model, loss_fn, inputs[mask], targets[mask], keys=group[mask]
            )
            losses, method = per_unit.losses, per_unit.method
            result = clip_and_sum(
                per_unit.grads, clipping.max_grad_norm, per_layer=clipping.per_layer
            )
        for name, value in result.summed.items():
            summed[name] += value
        clipped += result.clipped_fraction * chunk.numel()
        loss_total += float(losses.sum())
    std = noise_multiplier * clipping.max_grad_norm
    # The noise std is σ·C whatever the sensitivity: the event below states the sensitivity,
    # so the accountant sees noise multiplier σ·C/sensitivity.
    out = {
        name: (value + noise.gaussian_like(value, std)) / expected_batch_units
        for name, value in summed.items()
    }
    count = int(unique.numel())
    mean_loss = loss_total / max(1, len(inputs))
    stats = StepStats(count, clipped / count if count else 0.0, mean_loss, method)
    return out, stats


def ghost_pays_off(model: nn.Module) -> bool:
    """Ghost clipping when every trainable layer has a ghost rule and none is a convolution.

    Measured on this CPU (benchmarks/RESULTS.md): ghost clipping is 1.8× faster than vmap on an
    MLP but 2–8× slower on small CNNs, where unfolding costs more than per-sample gradients.
    A per-layer cost model is the performance issue's work.
    """
    if any(isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) for m in model.modules()):
        return False
    try:
        check_ghost_supported(model)
    except UnsupportedModuleError:
        return False
    return True


def step_event(clipping: Clipping, noise_multiplier: float) -> GaussianEvent:
    """The Gaussian event of one step: noise σ·C on a sum with the clipping's sensitivity."""
    return GaussianEvent(
        sigma=noise_multiplier * clipping.max_grad_norm, sensitivity=clipping.sensitivity
    )


def _chunks(units: torch.Tensor, size: int | None) -> list[torch.Tensor]:
    if units.numel() == 0:
        return []
    if size is None or size >= units.numel():
        return [units]
    return list(torch.split(units, size))


def as_unit_tensor(units: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(units, dtype=torch.long)
