"""Ghost-norm rules: a layer's per-example gradient norms and its clipped gradient sum.

Each rule receives, for every call of the layer in one forward pass, its input ``a`` and the
gradient ``b = ∂(Σ_i ℓ_i)/∂output`` (batch-first: row i belongs to example i, and since no other
example's loss depends on row i, ``b_i = ∂ℓ_i/∂output_i``). For each trainable parameter it
returns a :class:`ParamNorm`: ‖∇_param ℓ_i‖² per example, without forming the
(B, *param.shape) per-example gradients where a cheaper identity exists, and the weighted sum
Σ_i w_i ∇_param ℓ_i for any weights w, from the same a and b ("book-keeping", Bu, Wang, Zha &
Karypis 2023, "Differentially Private Optimization on Large Model at Small Cost"): DP-SGD then
needs one forward and one backward pass, like non-private training, instead of a second backward
with reweighted losses (Li et al. 2022).

- Linear, weight, input (B, T, d_in): g_i = Σ_t b_it a_itᵀ, so
  ‖g_i‖²_F = Σ_{t,s} (a_it·a_is)(b_it·b_is) = ⟨A_i A_iᵀ, B_i B_iᵀ⟩ (the "ghost norm",
  Goodfellow 2015, "Efficient Per-Example Gradient Computations"; for sequences, Li, Tramèr,
  Liang & Hashimoto 2022, "Large Language Models Can Be Strong Differentially Private
  Learners"), T²·(d_in + d_out) multiply-adds per example; the explicit gradient costs
  T·d_in·d_out. The rule picks "explicit" when d_in·d_out < T·(d_in + d_out), where the
  explicit gradient is both the cheaper to form and smaller than a and b, which book-keeping
  keeps otherwise (its weighted sum is then a contraction over B instead of a product over
  B·T rows), and "gram" otherwise. At equality nothing is saved in what is kept, and forming
  the gradients while a and b are still alive raised the 6-layer d = 256 transformer's peak at
  batch 1024 from 1.27× to 1.34× non-private (RESULTS.md, fifth run): Gram. This refines Bu et
  al. 2023's layer-wise T² vs d_in·d_out memory rule (every layer that rule makes explicit is
  explicit here too): a 64 × 64 projection at T = 48 is explicit, a 256 × 1024 one at T = 128
  Gram. An input that k layers read (self-attention's q/k/v) is kept once,
  so each counts d_in/k of it, and its Gram is computed once (:mod:`~deniable.grad.ghost_shared`).
  For 2-D inputs T = 1 and the Gram form is ‖a_i‖²‖b_i‖².
  The weighted sum is Σ_i w_i g_i = (w ⊙ B)ᵀ A, one matrix product over all rows.
- Conv1d/Conv2d: the same identities on the input patches under the kernel (T = output
  positions; :mod:`~deniable.grad.conv_patches`): Gram when T·(d_in + d_out) < d_in·d_out (on
  row-major inputs of many channels, whose patches copy slowly, when it saves half), else
  explicit per-example gradients, by one batched product over the patches for inputs of few
  channels and by the kernel's own weight backward vmapped over rows otherwise (see
  :func:`_conv`).
- Embedding: g_i = Σ_t e_{k_it} b_itᵀ, so ‖g_i‖² = Σ_{t,s} [k_it = k_is] (b_it·b_is).
- Biases, LayerNorm, GroupNorm and RMSNorm affine parameters: the explicit per-example gradient,
  which is the size of the parameter (cheap).
- Any other layer with its own trainable parameters, called with one batch-first tensor: the
  explicit per-example gradient of that layer alone by torch.func (vmap of the layer's
  vector-Jacobian product with b), method "vmap". This is the per-layer fallback: the rest of the
  model keeps its ghost rules. It assumes, as whole-model vmap does, that row i of the layer's
  output depends on row i of its input only.

Rules are registered per module type with :func:`register_ghost_rule`. A module whose class
overrides ``forward`` of a registered type gets the vmap fallback (its forward may differ).
Modules that use a child's parameters without calling the child (``nn.MultiheadAttention``) or
that torch.func cannot batch (recurrent modules) get no rule; the error names the replacement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from deniable.errors import GhostUnsupportedError
from deniable.grad import ghost_shared
from deniable.grad.conv_patches import (
    channels_last_input,
    conv_pads,
    conv_patches,
    output_rows,
    per_example_weight_grads,
)
from deniable.grad.per_sample import row_norms

WeightedSum = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ParamNorm:
    """One parameter's per-example gradients in a batch, kept implicit.

    Attributes:
        sq_norm: (B,) squared norms ‖∇_param ℓ_i‖².
        method: "gram", "explicit" or "vmap" (how ``sq_norm`` was computed).
        weighted_sum: ``w (B,) ↦ Σ_i w_i ∇_param ℓ_i``, shaped like the parameter.
    """

    sq_norm: Tensor
    method: str
    weighted_sum: WeightedSum

    def reshaped(self, *shape: int) -> ParamNorm:
        """The same norms with ``weighted_sum`` returning ``shape`` (the parameter's shape)."""
        inner = self.weighted_sum
        return ParamNorm(self.sq_norm, self.method, lambda w: inner(w).reshape(shape))


GhostRule = Callable[[nn.Module, Sequence[Tensor], Sequence[Tensor]], dict[str, ParamNorm]]
GhostCheck = Callable[[nn.Module], "str | None"]

_RULES: dict[type[nn.Module], GhostRule] = {}
_CHECKS: dict[type[nn.Module], GhostCheck] = {}

# No rule, not even the vmap fallback: why, and what to use instead.
_REFUSED: dict[type[nn.Module], str] = {
    nn.MultiheadAttention: (
        "uses out_proj's parameters without calling it; replace it with "
        "deniable.models.attention.DPMultiheadAttention (replace_attention(model))"
    ),
    nn.RNNBase: "fused recurrent kernels cannot be batched per layer; use deniable.models.DPLSTM",
    nn.RNNCellBase: "fused recurrent kernels cannot be batched per layer",
    nn.modules.batchnorm._BatchNorm: "batch statistics mix examples; use GroupNorm",
}


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
    """The rule for ``module`` (its registered rule, else the per-layer vmap fallback) and, when
    there is none, the reason."""
    for refused, why in _REFUSED.items():
        if isinstance(module, refused):
            return None, why
    for cls in type(module).__mro__:
        rule = _RULES.get(cls)
        if rule is None:
            continue
        if type(module).forward is not cast(type[nn.Module], cls).forward:
            return layer_vmap_rule, None
        check = _CHECKS.get(cls)
        reason = check(module) if check is not None else None
        return (None, reason) if reason else (rule, None)
    return layer_vmap_rule, None


def explicit(per_example: Tensor, method: str = "explicit") -> ParamNorm:
    """Norms and weighted sums from materialised per-example gradients (B, *shape)."""
    sq = _sq_row_norms(per_example)
    return ParamNorm(sq, method, lambda w: torch.tensordot(w.to(per_example.dtype), per_example, 1))


def _sq_row_norms(per_example: Tensor) -> Tensor:
    """‖row‖² of (B, ...) in at least float32, without a squared copy: the (B, ...) ``pow(2)``
    it replaces cost 13× the norm on this CPU at 80 MB (page faults of the new tensor)."""
    return row_norms(per_example).square()


def kept_or_recomputed(
    per_example: Callable[[slice], Tensor],
    batch: int,
    param_numel: int,
    kept_numel: int,
    weighted_sum: WeightedSum,
    *,
    max_rows: int | None = None,
) -> ParamNorm:
    """Norms from per-example gradients (B, *shape), formed by ``per_example(rows)`` for slices
    of rows so that no more than ``kept_numel`` values (the size of the layer's a and b, which
    the rule keeps anyway) exist at once. If all B fit in that size they are kept for the
    weighted sum (then a cheap contraction); else they are dropped and ``weighted_sum``
    recomputes the sum from a and b in one pass over the batch (what a non-private backward
    computes, with w = 1). ``max_rows`` caps a slice further, for kernels that are faster on
    fewer rows at a time (:func:`_conv`)."""
    fit = max(1, kept_numel // max(1, param_numel))
    rows = fit if max_rows is None else min(fit, max_rows)
    slices = [slice(start, start + rows) for start in range(0, batch, rows)]
    if fit >= batch:
        parts = [per_example(rows) for rows in slices]
        return explicit(_joined(parts, 0))
    sq = torch.cat([_sq_row_norms(per_example(rows)) for rows in slices])
    return ParamNorm(sq, "explicit", weighted_sum)


def grouped_linear_norm(
    a: Tensor,
    b: Tensor,
    *,
    readers: int = 1,
    gram_of_a: Callable[[Callable[[], Tensor]], Tensor] | None = None,
    scaled_a: Callable[[Callable[[], Tensor]], Tensor] | None = None,
) -> ParamNorm:
    """Σ_t b_t a_tᵀ per example and group, for a (B, G, T, d_in) and b (B, G, T, d_out).

    Norms are summed over groups; ``weighted_sum`` returns (G, d_out, d_in). Explicit when
    d_in·d_out < T·(d_in/readers + d_out), else Gram (see the module doc); ``readers`` is the
    number of layers that read this same ``a`` (kept once: each one's share is 1/readers), and
    ``gram_of_a(compute)`` may return a Gram of ``a`` another reader computed, and
    ``scaled_a(compute)`` a w ⊙ a another reader's weighted sum formed
    (:mod:`deniable.grad.ghost_shared`).
    """
    groups, steps, d_in = a.shape[1:]
    d_out = b.shape[3]
    if d_in * d_out * readers >= steps * (d_in + d_out * readers):
        sq = gram_sq_norms(a, b, gram_of_a)

        def weighted(w: Tensor) -> Tensor:
            # (w ⊙ B)ᵀA = Bᵀ(w ⊙ A): scale the smaller of the two (a feed-forward
            # up-projection's b is 4× its a, the down-projection's a 4× its b, an LSTM cell's
            # b 3.2× its a at input 32, hidden 128)
            # (q, k and v read one a: scaled once for the three, so each pays d_in/readers)
            weights = w.to(b.dtype).view(-1, 1, 1, 1)
            if d_in < d_out * readers:
                scale = lambda: a * weights  # noqa: E731
                sa, sb = (scale() if scaled_a is None else scaled_a(scale)), b
            else:
                sa, sb = a, b * weights
            rows_b = sb.transpose(0, 1).reshape(groups, -1, d_out)
            rows_a = sa.transpose(0, 1).reshape(groups, -1, d_in)
            return torch.bmm(rows_b.transpose(1, 2), rows_a)

        return ParamNorm(sq, "gram", weighted)
    # the per-example gradients are smaller than this layer's share of a and b: kept for the
    # sum (then a contraction over B)
    return explicit(torch.matmul(b.transpose(2, 3), a))  # (B, G, d_out, d_in)


def gram_sq_norms(
    a: Tensor, b: Tensor, gram_of_a: Callable[[Callable[[], Tensor]], Tensor] | None = None
) -> Tensor:
    """‖Σ_t b_t a_tᵀ‖² per example, summed over groups, = ⟨A Aᵀ, B Bᵀ⟩ for a (B, G, T, d_in) and
    b (B, G, T, d_out); ``gram_of_a`` as in :func:`grouped_linear_norm`."""
    batch, groups = a.shape[:2]
    flat_a, flat_b = a.flatten(0, 1), b.flatten(0, 1)
    compute = lambda: torch.bmm(flat_a, flat_a.transpose(1, 2))  # noqa: E731
    gram_a = compute() if gram_of_a is None else gram_of_a(compute)
    gram_b = torch.bmm(flat_b, flat_b.transpose(1, 2))
    return (gram_a * gram_b).sum((1, 2)).clamp_min(0).view(batch, groups).sum(1)


def _bias_norm(b: Tensor) -> ParamNorm:
    """Per-example Σ_t b_t for b (N, T, d_out)."""
    return explicit(b.sum(1))


def _joined(parts: list[Tensor], dim: int) -> Tensor:
    """``torch.cat`` that does not copy a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _summed(parts: list[Tensor]) -> Tensor:
    """The sum of one or more same-shaped tensors (one layer's calls), without a copy of one."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)


def _as_sequence(xs: Sequence[Tensor]) -> Tensor:
    """Concatenate calls along the step axis: (B, *, d) each → (B, T_total, d)."""
    parts = [x.reshape(x.shape[0], -1, x.shape[-1]) for x in xs]
    return _joined(parts, 1)


def layer_vmap_rule(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    """Per-example gradients of ``module``'s own parameters by vmap of its vjp (see module doc)."""
    own = {n: p.detach() for n, p in module.named_parameters(recurse=False) if p.requires_grad}
    if not own:
        return {}

    def one(x: Tensor, g: Tensor) -> dict[str, Tensor]:
        def out_of(params: dict[str, Tensor]) -> Tensor:
            return functional_call(module, params, (x.unsqueeze(0),)).squeeze(0)

        pull = vjp(out_of, own)[1]
        return cast(dict[str, Tensor], pull(g)[0])

    total: dict[str, Tensor] = {}
    for x, g in zip(inputs, grads, strict=True):
        try:
            with torch.enable_grad():
                per = vmap(one)(x, g)  # randomness="error": a re-drawn mask would be wrong
        except (RuntimeError, NotImplementedError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise GhostUnsupportedError(
                f"per-layer vmap of {type(module).__name__} failed ({first}); "
                "use per-sample gradients (vmap) for this model"
            ) from error
        for name, value in per.items():
            total[name] = total[name] + value if name in total else value
    return {name: explicit(value, "vmap") for name, value in total.items()}


@register_ghost_rule(nn.Linear)
def linear_rule(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    assert isinstance(module, nn.Linear)
    a, b = _as_sequence(inputs), _as_sequence(grads)
    out = {}
    if module.weight.requires_grad:
        shared = ghost_shared.current()
        readers, gram_of_a, scaled_a = 1, None, None
        if shared is not None and len(inputs) == 1:  # q/k/v read one input: kept once, one Gram
            x = inputs[0]
            readers = shared.readers_of(x)
            gram_of_a = lambda compute: shared.gram(x, compute)  # noqa: E731

            def scaled_a(compute: Callable[[], Tensor]) -> Tensor:
                weighting = ghost_shared.current()  # the weighted sums' context, if open
                return compute() if weighting is None else weighting.once("scaled", x, compute)

        part = grouped_linear_norm(
            a.unsqueeze(1),
            b.unsqueeze(1),
            readers=readers,
            gram_of_a=gram_of_a,
            scaled_a=scaled_a,
        )
        out["weight"] = part.reshaped(b.shape[2], a.shape[2])  # (d_out, d_in)
    if module.bias is not None and module.bias.requires_grad:
        out["bias"] = _bias_norm(b)
    return out


@register_ghost_check(nn.Conv1d, nn.Conv2d)
def _conv_check(module: nn.Module) -> str | None:
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    if module.padding_mode not in ("zeros", "reflect", "replicate", "circular"):
        return f"padding_mode={module.padding_mode!r} is not supported"
    return None


def _conv_weight_grad(
    module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor, per_example: bool = False
) -> Tensor:
    """The weight gradient from the conv's own weight backward: per example (B, *weight.shape)
    by vmap over rows, or summed over the batch (1 call)."""
    pads = conv_pads(module)
    if module.padding_mode == "zeros" and pads[::2] == pads[1::2]:
        padding = pads[::2][::-1]  # symmetric: let the kernel pad
    else:
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x, padding = nnf.pad(x, pads, mode=mode), [0] * len(pads[::2])
    weight = module.weight.detach()
    stride, dilation = list(module.stride), list(module.dilation)

    def backward(xs: Tensor, gs: Tensor) -> Tensor:
        return torch.ops.aten.convolution_backward(
            gs,
            xs,
            weight,
            None,
            stride,
            padding,
            dilation,
            False,
            [0] * len(stride),
            module.groups,
            [False, True, False],
        )[1]

    if not per_example:
        return cast(Tensor, backward(x, g))
    return cast(Tensor, vmap(lambda xi, gi: backward(xi.unsqueeze(0), gi.unsqueeze(0)))(x, g))


# Explicit per-example conv gradients: from input patches and one batched product for inputs
# of at most this many channels per group, where the vmapped kernel is slow; else from the
# kernel's weight backward vmapped over slices of _CONV_ROWS rows. Medians on CPU, one thread,
# channels-last, norms and weighted sum (in-process A/B, glibc keeping freed memory):
# Conv2d(1, 16, 8, stride 2) on 28×28, batch 256, patches 4.9 against vmapped 7.9 ms;
# Conv2d(3, 32, 3) on 32×32, batch 128, 11.3 against 16.5 ms; but Conv2d(16, 32, 3) on
# 28×28, batch 256, 43.3 against 34.8 ms and Conv2d(64, 64, 3) on 32×32, batch 64, 76 against
# 68 ms (row-major inputs: 172 against 58 ms).
_PATCH_CHANNELS = 4
# The batched kernel slows down with many examples at once: medians of 15 runs, one thread,
# batch 256, in slices of 32 / 64 / 109 / 256 rows: Conv2d(16, 32, 4, stride 2) on 13×13
# inputs 5.3 / 4.1 / 5.9 / 11.0 ms; Conv2d(32, 64, 3, padding 1) on 8×8 12.1 / 12.0 / 16.5 /
# 27.1 ms.
_CONV_ROWS = 64


@register_ghost_rule(nn.Conv1d, nn.Conv2d)
def _conv(
    module: nn.Module, inputs: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[str, ParamNorm]:
    """The Linear identities on input patches (:mod:`~deniable.grad.conv_patches`), T = output
    positions, d_in = C_in/G·∏k, d_out = C_out/G: Gram norms when T·(d_in + d_out) < d_in·d_out
    (cheaper than forming the gradients; for row-major inputs of more than
    :data:`_PATCH_CHANNELS` channels per group, whose patches copy in short runs, when it saves
    half), else explicit per-example gradients: by one batched product over the patches for
    inputs of at most :data:`_PATCH_CHANNELS` channels per group, else by the kernel's own weight
    backward vmapped over rows. Patches are formed for slices of rows no larger than the layer's
    input and output gradient, which the rule keeps anyway (on a 1-channel 28×28 input an 8×8
    kernel's patches are 16× the input). Explicit gradients are kept for the weighted sum when
    they are smaller than that input and output gradient (:func:`kept_or_recomputed`);
    otherwise, and for Gram, the weighted sum is the conv's own weight backward of (x, w ⊙ b),
    one call over the batch, what a non-private backward computes.

    Against the vmapped kernel alone (the rule before; in-process A/B, one thread, norms and
    weighted sum, glibc keeping freed memory), on 13 layer shapes from MNIST to ResNet-like
    blocks in both layouts: never slower beyond noise, and 1.3–1.8× faster on the Papernot CNN's
    two convs, a 3-channel first layer and Gram-cheap channels-last layers (RESULTS.md, sixth
    run); the Papernot CNN's whole DP step 26.5 against 29.8 ms."""
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    groups = module.groups
    batch = grads[0].shape[0]
    steps = sum(g[0, 0].numel() for g in grads)
    d_out = module.out_channels // groups
    d_in = module.weight[0].numel()
    out = {}
    if module.weight.requires_grad:
        calls = list(zip(inputs, grads, strict=True))
        kept = sum(x.numel() + g.numel() for x, g in calls)
        rows = max(1, kept // (groups * steps * d_in))  # patch slices no larger than a and b
        few_channels = module.in_channels // groups <= _PATCH_CHANNELS

        def weighted(w: Tensor) -> Tensor:
            parts = [
                _conv_weight_grad(module, x, g * w.to(g.dtype).view(-1, *[1] * (g.dim() - 1)))
                for x, g in calls
            ]
            return _summed(parts)

        # patches of row-major inputs with many channels copy in short runs: their Gram must
        # save twice the compute (Conv2d(16, 32, 4, stride 2), 13×13, batch 256: Gram 6.9
        # against 5.2 ms vmapped on row-major, 4.2 against 5.5 ms on channels-last inputs)
        order = channels_last_input(inputs[0])  # one order of patch entries for all calls
        if (1 if order or few_channels else 2) * steps * (d_in + d_out) < d_in * d_out:

            def gram(part: slice) -> Tensor:
                a = _joined([conv_patches(module, x[part], order).values for x in inputs], 2)
                return gram_sq_norms(a, _joined([output_rows(module, g[part]) for g in grads], 2))

            slices = [slice(start, start + rows) for start in range(0, batch, rows)]
            out["weight"] = ParamNorm(torch.cat([gram(part) for part in slices]), "gram", weighted)
        else:

            def per_example(part: slice) -> Tensor:
                per = [
                    per_example_weight_grads(module, x[part], g[part])
                    if few_channels
                    else _conv_weight_grad(module, x[part], g[part], per_example=True)
                    for x, g in calls
                ]
                return _summed(per)

            out["weight"] = kept_or_recomputed(
                per_example,
                batch,
                module.weight.numel(),
                kept,
                weighted,
                max_rows=rows if few_channels else _CONV_ROWS,
            )
    if module.bias is not None and module.bias.requires_grad:
        total = sum(g.sum(tuple(range(2, g.dim()))) for g in grads)  # (B, C_out), no NHWC copy
        assert isinstance(total, Tensor)
        out["bias"] = explicit(total)
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
        sq = (gram_b * same).sum((1, 2)).clamp_min(0)

        def weighted(w: Tensor) -> Tensor:
            rows = (b * w.to(b.dtype).view(-1, 1, 1)).flatten(0, 1)
            return b.new_zeros(vocab, dim).index_add_(0, idx.flatten(), rows)

        return {"weight": ParamNorm(sq, "gram", weighted)}
    rows = b.new_zeros(idx.shape[0], vocab, dim)
    rows.scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, dim), b)
    return {"weight": explicit(rows)}


def _affine_parts(
    module: nn.Module, weight_grads: Callable[[], Tensor], bias_grads: Callable[[], Tensor]
) -> dict[str, ParamNorm]:
    """Explicit parts of an elementwise weight and bias from their per-example gradients
    (B, *param.shape), formed only for the trainable ones."""
    out = {}
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if isinstance(weight, Tensor) and weight.requires_grad:
        out["weight"] = explicit(weight_grads())
    if isinstance(bias, Tensor) and bias.requires_grad:
        out["bias"] = explicit(bias_grads())
    return out


def _affine_norms(
    module: nn.Module, normalized: Sequence[Tensor], grads: Sequence[Tensor], keep: int
) -> dict[str, ParamNorm]:
    """Explicit per-example grads of elementwise weight/bias: Σ over positions of x̂·b and b.

    ``normalized`` and ``grads`` are reshaped to (B, positions, *param_shape) by the caller's
    ``keep`` (number of trailing dims that index the parameter).
    """

    def per_example(x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1, *x.shape[x.dim() - keep :]).sum(1)

    return _affine_parts(
        module,
        lambda: _summed([per_example(x * g) for x, g in zip(normalized, grads, strict=True)]),
        lambda: _summed([per_example(g) for g in grads]),
    )


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
    """Per-example (weight, bias) gradients Σ_s x̂_cs·b_cs and Σ_s b_cs for every channel c
    (s over positions), in at least float32."""
    assert isinstance(module, nn.GroupNorm)
    dtype = torch.promote_types(inputs[0].dtype, torch.float32)
    xs, gs = [x.to(dtype) for x in inputs], [g.to(dtype) for g in grads]

    def weight_grads() -> Tensor:
        products = [
            _normalized_products(x, g, module.num_groups, module.eps)
            for x, g in zip(xs, gs, strict=True)
        ]
        return _summed(products).to(module.weight.dtype)

    def bias_grads() -> Tensor:
        return _summed([g.sum(tuple(range(2, g.dim()))) for g in gs]).to(module.bias.dtype)

    return _affine_parts(module, weight_grads, bias_grads)


def _normalized_products(x: Tensor, g: Tensor, groups: int, eps: float) -> Tensor:
    """Σ_s x̂_cs·g_cs per example and channel, (B, C), x̂ = group-normalised x. Row-major: by
    ``group_norm``. Channels-last: its CPU kernel is slow there (13 ms of the small MNIST CNN's
    100 ms DP step, batch 256, one thread), so by per-channel sums instead (6.1 against 11.9 ms
    for this rule on (256, 16, 28, 28)): μ per example and group from the channels' sums, then
    the centred x − μ (two-pass, so a large mean does not cancel in float32) gives σ² and
    Σ_s (x − μ)·g / σ."""
    spatial = tuple(range(2, x.dim()))
    if not (x.dim() == 4 and channels_last_input(x)):
        return (nnf.group_norm(x, groups, eps=eps) * g).sum(spatial)
    batch, channels = x.shape[:2]
    size = channels // groups
    count = size * x[0, 0].numel()  # values per example and group

    def per_group(per_channel: Tensor) -> Tensor:  # (B, C) sums → each channel's group total
        return per_channel.view(batch, groups, size).sum(2).repeat_interleave(size, 1)

    mean = per_group(x.sum(spatial)) / count
    centred = x - mean.view(batch, channels, 1, 1)
    rstd = (per_group(centred.square().sum(spatial)) / count + eps).rsqrt()
    return centred.mul_(g).sum(spatial) * rstd
