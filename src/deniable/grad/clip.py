"""Per-unit clipping and summation: the bounded-sensitivity step of DP-SGD.

Flat clipping (Abadi et al. 2016): each unit's whole gradient g_u (all parameters together) is
scaled by

    s_u = min(1, C / ‖g_u‖₂)        (s_u = 1 when ‖g_u‖ = 0)

so ‖s_u g_u‖₂ ≤ C, and the sum Σ_u s_u g_u changes by at most C in L2 norm when one unit is added
or removed: the add/remove-one L2 sensitivity is C (2C for replace-one neighbours).

Per-layer clipping (McMahan et al. 2018, "A General Approach to Adding Differential Privacy to
Iterative Training Procedures"): each of the L parameter tensors is clipped on its own to
C_l = C / sqrt(L). A unit's clipped contribution then has squared norm Σ_l ‖clip(g_u,l)‖² ≤
Σ_l C_l² = L · C²/L = C², so the sensitivity is still C and the same noise σ·C applies.

Floating point: the computed norm of s_u g_u can exceed C by a rounding error when s_u = C/‖g_u‖
exactly. Clipped units are therefore scaled by C/‖g_u‖ · (1 − 16·eps(dtype)) (a relative change
of 2e-6 in float32), so the bound holds as computed; units with ‖g_u‖ ≤ C are left unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from deniable.errors import DeniableError, check_positive
from deniable.grad.per_sample import per_sample_norms, row_norms


@dataclass(frozen=True)
class ClipResult:
    """The clipped sum of one batch.

    Attributes:
        summed: ``{name: param.shape}``, Σ_u clip(g_u) over the batch's units (no noise yet).
        norms: (U,) flat L2 norms of the units' gradients *before* clipping.
        clipped_fraction: share of units whose gradient was scaled down (per-layer mode: units
            with at least one parameter tensor scaled down).
        max_norm: the clipping bound C.
        per_layer: whether each parameter tensor was clipped to C/sqrt(L) separately.
    """

    summed: dict[str, Tensor]
    norms: Tensor
    clipped_fraction: float
    max_norm: float
    per_layer: bool

    @property
    def sensitivity(self) -> float:
        """L2 bound on one unit's contribution to ``summed``: C in both modes (add/remove-one)."""
        return clip_sensitivity(self.max_norm, per_layer=self.per_layer)

    @property
    def num_units(self) -> int:
        """Number of privacy units U in the batch."""
        return int(self.norms.shape[0])


def clip_sensitivity(max_norm: float, *, per_layer: bool = False) -> float:
    """L2 sensitivity (add/remove-one) of a sum of clipped unit gradients: C in both modes.

    Per-layer clipping to C/sqrt(L) per tensor keeps the total norm ≤ C (see module doc).
    """
    del per_layer  # same bound by construction; kept so callers state which mode they used
    return check_positive("max_norm", max_norm)


def check_finite_norms(norms: Tensor) -> None:
    """A :class:`DeniableError` if a unit's gradient norm is not finite (it overflowed)."""
    if not bool(torch.isfinite(norms).all()):
        bad = int((~torch.isfinite(norms)).sum())
        raise DeniableError(
            f"{bad} per-sample gradient norm(s) are not finite; lower the learning rate or "
            "check the inputs for NaN/inf"
        )


def clip_factors(norms: Tensor, max_norm: float) -> Tensor:
    """Scale factors s = min(1, C/‖g‖) (1 where ‖g‖ = 0), shrunk by 16 ulps where < 1.

    Raises :class:`DeniableError` if a norm is not finite (a unit's gradient overflowed).
    """
    check_finite_norms(norms)
    margin = 1.0 - 16 * torch.finfo(norms.dtype).eps
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    shrunk = (max_norm / safe) * margin
    return torch.where(norms > max_norm, shrunk, torch.ones_like(norms))


def clip_and_sum(
    grads: dict[str, Tensor], max_norm: float, *, per_layer: bool = False
) -> ClipResult:
    """Clip each unit's gradient to L2 norm ≤ ``max_norm`` and sum over units.

    Args:
        grads: per-unit gradients ``{name: (U, *param.shape)}`` (from
            :func:`~deniable.grad.per_sample.per_sample_gradients`).
        max_norm: the clipping bound C > 0.
        per_layer: clip each parameter tensor to C/sqrt(L) instead of the whole gradient to C.

    Returns:
        A :class:`ClipResult`; its ``sensitivity`` is C in both modes.
    """
    max_norm = check_positive("max_norm", max_norm)
    norms = per_sample_norms(grads)
    if not per_layer:
        factors = clip_factors(norms, max_norm)
        summed = {n: _weighted_sum(g, factors) for n, g in grads.items()}
        fraction = float((norms > max_norm).float().mean())
        return ClipResult(summed, norms, fraction, max_norm, per_layer=False)
    layer_bound = max_norm / math.sqrt(len(grads))
    summed = {}
    clipped = torch.zeros_like(norms, dtype=torch.bool)
    for name, g in grads.items():
        layer_norms = row_norms(g)
        summed[name] = _weighted_sum(g, clip_factors(layer_norms, layer_bound))
        clipped |= layer_norms > layer_bound
    fraction = float(clipped.float().mean())
    return ClipResult(summed, norms, fraction, max_norm, per_layer=True)


def _weighted_sum(g: Tensor, factors: Tensor) -> Tensor:
    """Σ_u factors[u] · g[u] as one contraction over the unit dimension."""
    return torch.tensordot(factors.to(g.dtype), g, dims=([0], [0]))
