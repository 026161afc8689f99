"""The noiseless half of a DP-SGD step: Σ_u clip_C(g_u) over a batch's privacy units.

:func:`clipped_sum` is the one place where per-unit gradients are computed (ghost clipping where it
pays off, torch.func vmap otherwise), clipped and summed. The single-process step
(:func:`deniable.train.dp_step.noisy_gradient`) noises its result; multi-process DP-SGD
(:mod:`deniable.distributed`) adds the workers' sums and noises once. Its sensitivity is the
clipping's (:attr:`Clipping.sensitivity`): C per unit for add/remove-one, 2C with microbatches.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from deniable.errors import (
    DeniableError,
    GhostUnsupportedError,
    InvalidParameterError,
    UnsupportedModuleError,
    check_positive,
)
from deniable.grad.clip import ClipResult, clip_and_sum
from deniable.grad.compiled import compiled_clipped_sum
from deniable.grad.ghost import GhostClipResult, check_ghost_supported, ghost_clipped_sum
from deniable.grad.per_sample import compute_per_sample, per_sample_method

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
logger = logging.getLogger(__name__)


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


def ghost_pays_off(model: nn.Module) -> bool:
    """Ghost clipping when every trainable layer has a ghost rule or the per-layer vmap fallback,
    and ghost clipping has not failed on this model before.

    Measured on this CPU (benchmarks/RESULTS.md, one thread, batch 256): the eager MNIST CNN
    step went from 3758 ex/s with whole-model vmap (second throughput run) to 4981 with
    book-keeping ghost clipping (third run, a quieter machine); on MLPs ghost clipping measured
    1.8× vmap. It needs no (B, *param.shape) gradients in memory.
    """
    if model in _ghost_failed:
        return False
    try:
        check_ghost_supported(model)
    except UnsupportedModuleError:
        return False
    return True


_ghost_failed: weakref.WeakSet[nn.Module] = weakref.WeakSet()


@dataclass(frozen=True)
class ClippedSum:
    """Σ_u clip_C(g_u) over some units, with the counts a step's statistics need.

    Attributes:
        summed: ``{name: param.shape}`` for every trainable parameter (zeros for no units).
        units: number of clipping units summed (units, or microbatches with microbatching).
        clipped_units: how many of them were scaled down.
        loss_total: Σ of the per-example losses (to report a mean loss; not private).
        examples: number of examples behind the units.
        method: the per-sample path taken ("ghost", "vmap", "loop" or "compiled"; "none" for no
            units).
        layer_methods: with ghost clipping, how each parameter's norm was computed
            (``{"layer.weight": "gram" | "explicit"}``: the cost-based choice per layer).
    """

    summed: dict[str, torch.Tensor]
    units: int
    clipped_units: float
    loss_total: float
    examples: int
    method: str
    layer_methods: dict[str, str] = field(default_factory=dict)


def clipping_groups(units: torch.Tensor, clipping: Clipping) -> torch.Tensor:
    """The clipping unit of each example: its privacy unit, or its microbatch ``unit // size``."""
    return units if clipping.microbatch_size is None else units // clipping.microbatch_size


def clipped_sum(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    units: torch.Tensor,
    *,
    clipping: Clipping,
    physical_batch_units: int | None = None,
    compiled: bool = False,
    ghost_two_pass: bool = False,
) -> ClippedSum:
    """Clip each unit's whole gradient to ``clipping.max_grad_norm`` and sum; no noise.

    ``units`` gives each example's privacy unit. The units are processed in chunks of at most
    ``physical_batch_units`` (all examples of a unit in the same chunk), which changes memory,
    never the result. Raises :class:`~deniable.errors.DeniableError` if a unit's gradient norm is
    not finite. ``compiled`` uses the ``torch.compile``'d per-example path
    (:mod:`deniable.grad.compiled`) where it applies: one example per unit, flat clipping, a
    model vmap can batch. ``ghost_two_pass`` runs ghost clipping in two backward passes (less
    memory, more time; :func:`~deniable.grad.ghost.ghost_clipped_sum`).
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    summed = {n: torch.zeros_like(p) for n, p in params.items()}
    group = clipping_groups(units, clipping)
    unique = torch.unique(group)
    clipped = 0.0
    loss_total = 0.0
    method = "none"
    layer_methods: dict[str, str] = {}
    for chunk in _chunks(unique, physical_batch_units):
        mask = torch.isin(group, chunk)
        one_per_unit = int(mask.sum()) == chunk.numel()
        result: ClipResult
        fusable = one_per_unit and not clipping.per_layer
        fused = None
        if compiled and fusable and per_sample_method(model) == "vmap":
            fused = _try_compiled(model, loss_fn, inputs[mask], targets[mask], clipping)
        if fused is not None:
            summed_chunk, norms, losses = fused
            fraction = float((norms > clipping.max_grad_norm).float().mean())
            result = ClipResult(summed_chunk, norms, fraction, clipping.max_grad_norm, False)
            method = "compiled"
        elif fusable and (
            ghost := _try_ghost(
                model, loss_fn, inputs[mask], targets[mask], clipping, ghost_two_pass
            )
        ):
            result, losses, method = ghost, ghost.losses, "ghost"
            layer_methods = ghost.layer_methods
        else:
            per_unit = compute_per_sample(
                model, loss_fn, inputs[mask], targets[mask], keys=group[mask]
            )
            losses, method = per_unit.losses, per_unit.method
            result = clip_and_sum(
                per_unit.grads, clipping.max_grad_norm, per_layer=clipping.per_layer
            )
        for name, value in result.summed.items():
            summed[name] += value.detach()
        clipped += result.clipped_fraction * chunk.numel()
        loss_total += float(losses.sum())
    return ClippedSum(
        summed, int(unique.numel()), clipped, loss_total, len(inputs), method, layer_methods
    )


def _try_ghost(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    clipping: Clipping,
    two_pass: bool = False,
) -> GhostClipResult | None:
    """Ghost clipping, or None when it does not apply: statically (a layer without a rule) or at
    run time (a layer called with several tensors, a per-layer vmap that fails, a parameter
    used outside its layer). The run-time failure is logged once per model; whole-model vmap
    then computes the same sum.

    Book-keeping that runs out of memory (it holds the layers' output gradients until every
    norm is known) is retried in two passes, and this model stays in two-pass mode from then
    on (logged once): the same clipped sum in about a non-private step's memory."""
    if not ghost_pays_off(model):
        return None
    two_pass = two_pass or model in _two_pass_after_oom
    try:
        return ghost_clipped_sum(
            model, loss_fn, inputs, targets, clipping.max_grad_norm, two_pass=two_pass
        )
    except GhostUnsupportedError as error:
        logger.warning("ghost clipping does not apply (%s); using per-sample gradients", error)
        _ghost_failed.add(model)
        return None
    except RuntimeError as error:
        if two_pass or not is_out_of_memory(error):
            raise
    logger.warning(
        "book-keeping ghost clipping ran out of memory on a batch of %d; continuing in two "
        "passes (ghost_two_pass) for this model",
        inputs.shape[0],
    )
    _two_pass_after_oom.add(model)
    return _try_ghost(model, loss_fn, inputs, targets, clipping, two_pass=True)


_two_pass_after_oom: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def switched_to_two_pass(model: nn.Module) -> bool:
    """Whether book-keeping ran out of memory on ``model`` and its steps now run in two passes."""
    return model in _two_pass_after_oom


def ghost_mode(model: nn.Module, two_pass: bool) -> str:
    """How ghost clipping runs on ``model``: "book-keeping", "two-pass" (asked for) or
    "two-pass after out-of-memory" (book-keeping ran out; see :func:`_try_ghost`)."""
    if two_pass:
        return "two-pass"
    return "two-pass after out-of-memory" if switched_to_two_pass(model) else "book-keeping"


def is_out_of_memory(error: BaseException) -> bool:
    """A device's out-of-memory error, or the CPU allocator's (a plain RuntimeError)."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


_not_compilable: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _try_compiled(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    clipping: Clipping,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor] | None:
    """The compiled path, or None (with a warning, once per model) when the compiler fails here,
    e.g. without a C compiler: the eager paths compute the same sum."""
    if model in _not_compilable:
        return None
    try:
        return compiled_clipped_sum(model, loss_fn, inputs, targets, clipping.max_grad_norm)
    except DeniableError:
        raise
    except Exception as error:  # a compiler failure is not the user's error: fall back
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        logger.warning("torch.compile failed (%s); using the eager per-sample path", first)
        _not_compilable.add(model)
        return None


def _chunks(units: torch.Tensor, size: int | None) -> list[torch.Tensor]:
    if units.numel() == 0:
        return []
    if size is None or size >= units.numel():
        return [units]
    return list(torch.split(units, size))
