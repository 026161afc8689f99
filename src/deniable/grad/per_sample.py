"""Per-sample (per privacy unit) gradients with torch.func.

For a batch of B examples, the gradient of example i alone,

    g_i = ∇_θ ℓ(f_θ(x_i), y_i),

is what DP-SGD clips (Abadi et al. 2016, "Deep Learning with Differential Privacy"). The default
path computes all g_i at once with ``vmap(grad(ℓ ∘ functional_call))`` over examples: each example
runs as its own batch of one, so nothing one example does can reach another's gradient, whatever
the layers are. Models with recurrent modules, which torch.func cannot batch (``nn.LSTM``,
``nn.GRU``, ``nn.RNN`` and the ``*Cell`` modules, as of torch 2.x), use a per-example loop of
ordinary backward passes instead; so does any model whose vmap fails. The path taken is
reported as ``method`` ("vmap" or "loop") and logged.

Privacy unit: by default one example. With ``keys`` (one integer per example: a user id, a
document id, any group), the gradients of all examples sharing a key are summed into one row per
unit, so that clipping later bounds the whole unit's contribution (user-level DP, McMahan et al.
2018, "Learning Differentially Private Recurrent Language Models").
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from deniable.errors import DeniableError

LossFn = Callable[[Tensor, Tensor], Tensor]
Method = Literal["vmap", "loop"]

logger = logging.getLogger(__name__)

# Modules torch.func cannot vmap: their kernels write a batched result into an unbatched buffer
# (GRU, RNN, cells; LSTM too in float64, and in float32 it only runs through a per-example
# fallback kernel), so a plain per-example loop is as fast and always correct.
_NO_VMAP: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase)

# torch.func warns once per op that lacks a fast batching rule; the result is still correct.
_SLOW_BATCHING = "There is a performance drop because we have not yet implemented the batching rule"


@dataclass(frozen=True)
class PerSampleResult:
    """Per-unit gradients of one batch.

    Attributes:
        grads: ``{name: (U, *param.shape)}`` for every trainable parameter, row u is unit u's
            gradient (summed over its examples when keys were given).
        units: the U unit ids: ``arange(B)`` for examples, else the sorted unique keys.
        losses: (U,) per-unit losses (summed over a unit's examples), detached.
        method: "vmap" (one vectorised pass) or "loop" (one backward pass per example).
    """

    grads: dict[str, Tensor]
    units: Tensor
    losses: Tensor
    method: Method


# Models whose vmap failed once: later calls go straight to the loop (and warn only once).
_vmap_failed: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def per_sample_method(model: nn.Module) -> Method:
    """The path :func:`compute_per_sample` tries first for ``model``.

    "loop" if it has RNN modules or its vmap has failed before, else "vmap".
    """
    return "loop" if model in _vmap_failed or _vmap_blockers(model) else "vmap"


def _vmap_blockers(model: nn.Module) -> list[str]:
    return [name or "<root>" for name, m in model.named_modules() if isinstance(m, _NO_VMAP)]


def per_sample_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    keys: Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-unit gradients ``{name: (U, *param.shape)}`` and the unit ids (see the module doc).

    ``loss_fn(outputs, targets)`` is called on a batch of ONE example (``inputs[i:i+1]``) and
    must return its loss as a scalar: ``reduction="sum"`` and ``"mean"`` agree for one example.
    The loss must not depend on other examples. Use :func:`compute_per_sample` for the losses and
    the path taken.
    """
    result = compute_per_sample(model, loss_fn, inputs, targets, keys=keys, chunk_size=chunk_size)
    return result.grads, result.units


def compute_per_sample(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    keys: Tensor | None = None,
    chunk_size: int | None = None,
) -> PerSampleResult:
    """Per-unit gradients, losses, unit ids and the path taken; see :func:`per_sample_gradients`.

    ``chunk_size`` bounds how many examples vmap processes at once (memory), not the result.
    Parameters with ``requires_grad=False`` and buffers are passed through unchanged. In train
    mode, random layers (Dropout) draw independent randomness for every example.
    """
    batch = _check_batch(inputs, targets, keys)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise DeniableError("model has no trainable parameters; set requires_grad=True on some")
    method = per_sample_method(model)
    if method == "vmap":
        try:
            grads, losses = _vmap_grads(model, loss_fn, inputs, targets, chunk_size)
        except (RuntimeError, NotImplementedError) as error:
            logger.warning(
                "vmap per-sample gradients failed (%s); using a per-example loop for this model",
                error,
            )
            _vmap_failed.add(model)
            method = "loop"
    else:
        blockers = ", ".join(_vmap_blockers(model)) or "(vmap failed before)"
        logger.debug("per-sample gradients by a per-example loop: vmap cannot batch %s", blockers)
    if method == "loop":
        grads, losses = _loop_grads(model, loss_fn, inputs, targets, trainable)
    if keys is None:
        units = torch.arange(batch, device=inputs.device)
        return PerSampleResult(grads, units, losses, method)
    units, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    summed = {n: _sum_rows(g, inverse, len(units)) for n, g in grads.items()}
    return PerSampleResult(summed, units, _sum_rows(losses, inverse, len(units)), method)


def per_sample_norms(grads: dict[str, Tensor]) -> Tensor:
    """(U,) flat L2 norms ‖g_u‖ = sqrt(Σ_params ‖g_u,param‖²) of per-unit gradients."""
    if not grads:
        raise DeniableError("no per-sample gradients given; the model needs trainable parameters")
    layer_norms = [row_norms(g) for g in grads.values()]
    return torch.linalg.vector_norm(torch.stack(layer_norms, dim=1), dim=1)


def row_norms(g: Tensor) -> Tensor:
    """Row L2 norms of (U, ...) in at least float32 (half-precision sums lose the bound)."""
    dtype = torch.promote_types(g.dtype, torch.float32)
    return torch.linalg.vector_norm(g.flatten(1), dim=1, dtype=dtype)


def _check_batch(inputs: Tensor, targets: Tensor, keys: Tensor | None) -> int:
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        shape = tuple(inputs.shape)
        raise DeniableError(f"inputs must have a non-empty batch dimension, got {shape}")
    batch = inputs.shape[0]
    if targets.dim() == 0 or targets.shape[0] != batch:
        raise DeniableError(
            f"targets must have one row per example ({batch}), got shape {tuple(targets.shape)}"
        )
    integer = (torch.int32, torch.int64)
    if keys is not None and (keys.shape != (batch,) or keys.dtype not in integer):
        raise DeniableError(
            f"keys must be an integer tensor of shape ({batch},), "
            f"got {keys.dtype} {tuple(keys.shape)}"
        )
    return batch


def as_scalar_loss(loss: Tensor) -> Tensor:
    """``loss`` as a 0-d tensor; a DeniableError unless it holds exactly one number."""
    if loss.numel() != 1:
        raise DeniableError(
            "loss_fn must return one number for one example (use reduction='sum' or 'mean'), "
            f"got shape {tuple(loss.shape)}"
        )
    return loss.reshape(())


def _vmap_grads(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, chunk_size: int | None
) -> tuple[dict[str, Tensor], Tensor]:
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))

    def one_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        outputs = functional_call(model, (p, fixed), (x.unsqueeze(0),))
        return as_scalar_loss(loss_fn(outputs, y.unsqueeze(0)))

    per_example = vmap(
        grad_and_value(one_loss),
        in_dims=(None, 0, 0),
        randomness="different",
        chunk_size=chunk_size,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SLOW_BATCHING)
        grads, losses = per_example(params, inputs, targets)
    return grads, losses.detach()


def _loop_grads(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    trainable: dict[str, nn.Parameter],
) -> tuple[dict[str, Tensor], Tensor]:
    names = list(trainable)
    params = [trainable[n] for n in names]
    rows: list[list[Tensor]] = [[] for _ in names]
    losses = []
    with torch.enable_grad():
        for i in range(inputs.shape[0]):
            loss = as_scalar_loss(loss_fn(model(inputs[i : i + 1]), targets[i : i + 1]))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for row, g, p in zip(rows, grads, params, strict=True):
                row.append(torch.zeros_like(p) if g is None else g)
            losses.append(loss.detach())
    return {n: torch.stack(row) for n, row in zip(names, rows, strict=True)}, torch.stack(losses)


def _sum_rows(values: Tensor, inverse: Tensor, units: int) -> Tensor:
    out = values.new_zeros((units, *values.shape[1:]))
    return out.index_add_(0, inverse, values)
