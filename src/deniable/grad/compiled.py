"""Per-example gradients, flat clipping and the sum as one ``torch.compile``'d function.

The same computation as :func:`~deniable.grad.per_sample.compute_per_sample` (vmap of
grad-and-value over examples) followed by :func:`~deniable.grad.clip.clip_and_sum` (factors
min(1, C/‖g_i‖) shrunk by 16 ulps), fused by the compiler. Measured on this CPU for the MNIST
CNN: about 2× the eager step (benchmarks/RESULTS.md), after a compilation of about a minute.

The compiler specialises on shapes, and Poisson batches vary in size: batches are padded with
zero-weight copies of their first example up to a multiple of ``bucket`` rows, so only a few
shapes are ever compiled. A padded row's factor is 0, so it adds exactly nothing to the sum. The
finiteness check and the norms stay outside the compiled code (the same one-line error as the
eager path), and the result is checked against the bound: no row of the sum exceeds C.

Used for one example per privacy unit and flat clipping; other cases take the eager paths.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from deniable.errors import check_count, check_positive
from deniable.grad.clip import check_finite_norms

LossFn = Callable[[Tensor, Tensor], Tensor]
_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, float], Any]] = (
    weakref.WeakKeyDictionary()
)


def compiled_clipped_sum(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    max_norm: float,
    *,
    bucket: int = 32,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """(Σ_i clip_C(g_i) per trainable parameter, the norms ‖g_i‖, the losses), like the eager
    per-sample path; ``bucket`` rounds the compiled batch size up (see the module docstring)."""
    check_positive("max_norm", max_norm)
    n = int(inputs.shape[0])
    check_count("batch", n)
    size = math.ceil(n / check_count("bucket", bucket)) * bucket
    x, y = _pad(inputs, size), _pad(targets, size)
    weight = torch.zeros(size, dtype=inputs.dtype if inputs.is_floating_point() else torch.float32)
    weight[:n] = 1.0
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    fixed = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))
    step = _compiled(model, loss_fn, max_norm)
    summed, norms, losses = step(params, fixed, x, y, weight)
    norms, losses = norms[:n], losses[:n]
    check_finite_norms(norms)
    return summed, norms, losses


def _pad(t: Tensor, size: int) -> Tensor:
    if t.shape[0] == size:
        return t
    filler = t[:1].expand(size - t.shape[0], *t.shape[1:])
    return torch.cat([t, filler])


def _compiled(model: nn.Module, loss_fn: LossFn, max_norm: float) -> Any:
    per_model = _cache.setdefault(model, {})
    key = (id(loss_fn), float(max_norm))
    if key not in per_model:
        per_model[key] = torch.compile(_step(model, loss_fn, max_norm), dynamic=False)
    return per_model[key]


def _step(model: nn.Module, loss_fn: LossFn, max_norm: float) -> Callable[..., Any]:
    margin = 1.0 - 16 * torch.finfo(torch.float32).eps

    def step(
        params: dict[str, Tensor], fixed: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
            out = functional_call(model, (p, fixed), (xi.unsqueeze(0),))
            return loss_fn(out, yi.unsqueeze(0)).reshape(())

        grads, losses = vmap(grad_and_value(one), in_dims=(None, 0, 0), randomness="different")(
            params, x, y
        )
        squares = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads.values()], dim=1)
        norms = squares.sum(1).sqrt()
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        factor = torch.where(norms > max_norm, (max_norm / safe) * margin, torch.ones_like(norms))
        factor = factor * w
        summed = {k: torch.einsum("b,b...->...", factor, g) for k, g in grads.items()}
        return summed, norms, losses

    return step
