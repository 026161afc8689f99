"""Ghost-norm rules: a layer's per-example squared gradient norms from its inputs and output grads.

Each rule receives, for every call of the layer in one forward pass, its input ``a`` and the
gradient ``b = ∂(Σ_i ℓ_i)/∂output`` (batch-first: row i belongs to example i, and since no other
example's loss depends on row i, ``b_i = ∂ℓ_i/∂output_i``). It returns ‖∇_param ℓ_i‖² for each
trainable parameter, without forming the (B, *param.shape) per-example gradients where a cheaper
identity exists:

- Linear, weight, input (B, T, d_in): g_i = Σ_t b_it a_itᵀ, so
  ‖g_i‖²_F = Σ_{t,s} (a_it·a_is)(b_it·b_is) = ⟨A_i A_iᵀ, B_i B_iᵀ⟩ (the "ghost norm",
  Goodfellow 2015, "Efficient Per-Example Gradient Computations"; for sequences, Li, Tramèr,
  Liang & Hashimoto 2022, "Large Language Models Can Be Strong Differentially Private
  Learners"). It costs O(T²) memory per example against O(d_in·d_out) for the explicit
  gradient, so the rule picks "gram" when T² ≤ d_in·d_out and "explicit" otherwise (the
  layer-wise choice of Bu et al. 2023, "Differentially Private Optimization on Large Model at
  Small Cost"). For 2-D inputs T = 1 and the Gram form is ‖a_i‖²‖b_i‖².
- Conv1d/Conv2d: the same identity after unfolding the input into patches (T = output positions).
- Embedding: g_i = Σ_t e_{k_it} b_itᵀ, so ‖g_i‖² = Σ_{t,s} [k_it = k_is] (b_it·b_is).
- Biases, LayerNorm, GroupNorm and RMSNorm affine parameters: the explicit per-example gradient,
  which is the size of the parameter (cheap).

Rules are registered per module type with :func:`register_ghost_rule`; a module whose class
overrides ``forward`` of the registered type gets no rule (its forward may differ).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn


@dataclass(frozen=True)
class ParamNorm:
    """Per-example squared gradient norms (B,) of one parameter and how they were computed."""

    sq_norm: Tensor
    method: str


GhostRule = Callable[[nn.Module, Sequence[Tensor], Sequence[Tensor]], dict[str, ParamNorm]]
GhostCheck = Callable[[nn.Module], "str | None"]

_RULES: dict[type[nn.Module], GhostRule] = {}
_CHECKS: dict[type[nn.Module], GhostCheck] = {}


def register_ghost_rule(*types: type[nn.Module]) -> Callable[[GhostRule], GhostRule]:
    """Register ``rule(module, inputs, output_grads) -> {param_name: ParamNorm}`` for ``types``."""

    def register(rule: GhostRule) -> GhostRule:
        for cls in types:
            _RULES[cls] = rule
        return rule

    return register


def register_ghost_check(*types: type[nn.Module]) -> Callable[[GhostCheck], GhostCheck]:
    """Register ``check(module) -> reason or None``: why a configuration has no ghost rule."""

    def register(check: GhostCheck) -> GhostCheck:
        for cls in types:
            _CHECKS[cls] = check
        return check

    return register


def ghost_rule_for(module: nn.Module) -> tuple[GhostRule | None, str | None]:
    """The rule for ``module`` and, when there is none, the reason."""
    for cls in type(module).__mro__:
        rule = _RULES.get(cls)
        if rule is None:
            continue
        if type(module).forward is not cast(type[nn.Module], cls).forward:
            return None, f"overrides {cls.__name__}.forward"
        check = _CHECKS.get(cls)
        reason = check(module) if check is not None else None
        return (None, reason) if reason else (rule, None)
    return None, "no ghost-norm rule for this layer type"


def linear_weight_sq_norm(a: Tensor, b: Tensor) -> ParamNorm:
    """‖Σ_t b_t a_tᵀ‖²_F per row of a (N, T, d_in), b (N, T, d_out); Gram or explicit by cost."""
    steps, d_in, d_out = a.shape[1], a.shape[2], b.shape[2]
    if steps * steps <= d_in * d_out:
        gram_a = torch.bmm(a, a.transpose(1, 2))
        gram_b = torch.bmm(b, b.transpose(1, 2))
        return ParamNorm((gram_a * gram_b).sum((1, 2)).clamp_min(0), "gram")
    grads = torch.bmm(b.transpose(1, 2), a)
    return ParamNorm(grads.pow(2).sum((1, 2)), "explicit")


def _bias_sq_norm(b: Tensor) -> ParamNorm:
    """‖Σ_t b_t‖² per row of b (N, T, d_out)."""
    return ParamNorm(b.sum(1).pow(2).sum(1), "explicit")


def _as_sequence(xs: Sequence[Tensor]) -> Tensor:
    """Concatenate calls along the step axis: (B, *, d) each → (B, T_total, d)."""
    return torch.cat([x.reshape(x.shape[0], -1, x.shape[-1]) for x in xs], dim=1)


@register_ghost_rule(nn.Linear)
def _linear(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.Linear)
    a, b = _as_sequence(inputs), _as_sequence(grads)
    out = {}
    if module.weight.requires_grad:
        out["weight"] = linear_weight_sq_norm(a, b)
    if module.bias is not None and module.bias.requires_grad:
        out["bias"] = _bias_sq_norm(b)
    return out


@register_ghost_check(nn.Conv1d, nn.Conv2d)
def _conv_check(module: nn.Module) -> str | None:
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    if module.padding_mode not in ("zeros", "reflect", "replicate", "circular"):
        return f"padding_mode={module.padding_mode!r} is not supported"
    return None


def _conv_pads(module: nn.Conv1d | nn.Conv2d) -> list[int]:
    """nnf.pad amounts (last spatial dim first) reproducing the conv's own padding."""
    pairs: list[tuple[int, int]] = []
    for i, (k, d) in enumerate(zip(module.kernel_size, module.dilation, strict=True)):
        if module.padding == "valid":
            pairs.append((0, 0))
        elif module.padding == "same":  # torch puts the odd padding unit on the right
            total = d * (k - 1)
            pairs.append((total // 2, total - total // 2))
        else:
            pad = module.padding[i]
            assert isinstance(pad, int)
            pairs.append((pad, pad))
    return [p for pair in reversed(pairs) for p in pair]


def _conv_patches(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """Input patches (B, G, L, C_in/G·∏k) matching ``weight.view(C_out, -1)`` per group."""
    pads = _conv_pads(module)
    kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(2)
        pads = [*pads, 0, 0]
        kernel, stride, dilation = (1, *kernel), (1, *stride), (1, *dilation)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = nnf.pad(x, pads, mode=mode)
    cols = nnf.unfold(x, kernel, dilation=dilation, stride=stride)  # (B, C_in·∏k, L)
    batch, _, steps = cols.shape
    return cols.view(batch, module.groups, -1, steps).transpose(2, 3)


@register_ghost_rule(nn.Conv1d, nn.Conv2d)
def _conv(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    groups = module.groups
    a = torch.cat([_conv_patches(module, x) for x in inputs], dim=2)  # (B, G, T, d_in)
    b = torch.cat([g.reshape(g.shape[0], groups, g.shape[1] // groups, -1) for g in grads], 3)
    b = b.transpose(2, 3)  # (B, G, T, d_out/G)
    batch, _, steps, _ = a.shape
    out = {}
    if module.weight.requires_grad:
        per_group = linear_weight_sq_norm(a.flatten(0, 1), b.flatten(0, 1))
        out["weight"] = ParamNorm(per_group.sq_norm.view(batch, groups).sum(1), per_group.method)
    if module.bias is not None and module.bias.requires_grad:
        out["bias"] = _bias_sq_norm(b.transpose(1, 2).reshape(batch, steps, -1))
    return out


@register_ghost_check(nn.Embedding)
def _embedding_check(module: nn.Module) -> str | None:
    assert isinstance(module, nn.Embedding)
    if module.scale_grad_by_freq:
        return "scale_grad_by_freq=True scales gradients by batch-wide counts (mixes examples)"
    if module.sparse:
        return "sparse=True gradients cannot be clipped; set sparse=False"
    return None


@register_ghost_rule(nn.Embedding)
def _embedding(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.Embedding)
    if not module.weight.requires_grad:
        return {}
    idx = torch.cat([x.reshape(x.shape[0], -1) for x in inputs], dim=1)  # (B, T)
    b = _as_sequence(grads)  # (B, T, d)
    if module.padding_idx is not None:  # the padding row never receives gradient
        b = b * (idx != module.padding_idx).unsqueeze(-1).to(b.dtype)
    steps = idx.shape[1]
    vocab, dim = module.weight.shape
    if steps * steps <= vocab * dim:
        same = (idx.unsqueeze(2) == idx.unsqueeze(1)).to(b.dtype)
        gram_b = torch.bmm(b, b.transpose(1, 2))
        return {"weight": ParamNorm((gram_b * same).sum((1, 2)).clamp_min(0), "gram")}
    rows = b.new_zeros(idx.shape[0], vocab, dim)
    rows.scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, dim), b)
    return {"weight": ParamNorm(rows.pow(2).sum((1, 2)), "explicit")}


def _affine_norms(
    module: nn.Module, normalized: Sequence[Tensor], grads: Sequence[Tensor], keep: int
) -> dict[str, ParamNorm]:
    """Explicit per-example grads of elementwise weight/bias: Σ over positions of x̂·b and b.

    ``normalized`` and ``grads`` are reshaped to (B, positions, *param_shape) by the caller's
    ``keep`` (number of trailing dims that index the parameter).
    """

    def per_example(x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1, *x.shape[x.dim() - keep :]).sum(1)

    out = {}
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if isinstance(weight, Tensor) and weight.requires_grad:
        gw = sum(per_example(x * g) for x, g in zip(normalized, grads, strict=True))
        assert isinstance(gw, Tensor)
        out["weight"] = ParamNorm(gw.flatten(1).pow(2).sum(1), "explicit")
    if isinstance(bias, Tensor) and bias.requires_grad:
        gb = sum(per_example(g) for g in grads)
        assert isinstance(gb, Tensor)
        out["bias"] = ParamNorm(gb.flatten(1).pow(2).sum(1), "explicit")
    return out


@register_ghost_rule(nn.LayerNorm)
def _layer_norm(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.LayerNorm)
    shape = module.normalized_shape
    normalized = [nnf.layer_norm(a, shape, eps=module.eps) for a in inputs]
    return _affine_norms(module, normalized, grads, keep=len(shape))


@register_ghost_rule(nn.RMSNorm)
def _rms_norm(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.RMSNorm)
    shape = module.normalized_shape
    normalized = [nnf.rms_norm(a, shape, eps=module.eps) for a in inputs]
    return _affine_norms(module, normalized, grads, keep=len(shape))


@register_ghost_rule(nn.GroupNorm)
def _group_norm(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.GroupNorm)
    normalized = [nnf.group_norm(a, module.num_groups, eps=module.eps) for a in inputs]
    # (B, C, *spatial): move channels last so the parameter index is the trailing dim
    return _affine_norms(
        module, [x.movedim(1, -1) for x in normalized], [g.movedim(1, -1) for g in grads], keep=1
    )
