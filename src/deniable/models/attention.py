"""Multi-head attention made of Linear layers, so that ghost clipping covers transformers.

``nn.MultiheadAttention`` keeps the query/key/value projections in one raw parameter
(``in_proj_weight``) and applies ``out_proj``'s weight without calling it, inside one fused
function: no per-layer hook sees its inputs, so ghost clipping cannot compute its per-example
gradient norms and a transformer falls back to whole-model vmap, which holds B copies of every
parameter. :class:`DPMultiheadAttention` computes the same function (Vaswani et al. 2017,
"Attention Is All You Need"),

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,   Q = X W_q + b_q, K = …, V = …,

per head, concatenated and projected by ``out_proj``, with the four projections as plain
``nn.Linear`` layers applied to batch-first tensors, so each gets the Linear ghost rule
(Gram or explicit by cost; Li et al. 2022). Opacus's ``DPMultiheadAttention``
takes the same approach. :meth:`DPMultiheadAttention.from_mha` copies an ``nn.MultiheadAttention``
(tested equal, masks and dropout included), :func:`replace_attention` swaps every one in a model,
and ``nn.MultiheadAttention`` state dicts load into it (the packed ``in_proj`` is split).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from deniable.errors import InvalidParameterError, check_count


class DPMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s interface and function, with Linear projections.

    Unsupported (refused by :meth:`from_mha`): ``add_bias_kv`` and ``add_zero_attn``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = check_count("embed_dim", embed_dim)
        self.num_heads = check_count("num_heads", num_heads)
        if embed_dim % num_heads:
            raise InvalidParameterError("num_heads", num_heads, f"a divisor of {embed_dim}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidParameterError("dropout", dropout, "a probability in [0, 1)")
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.kdim = kdim or embed_dim
        self.vdim = vdim or embed_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        # Read by nn.TransformerEncoderLayer's fused-path check: "no packed projection" keeps it
        # on the ordinary path, which calls this module.
        self.in_proj_weight: Tensor | None = None
        self.in_proj_bias: Tensor | None = None
        self._qkv_same_embed_dim = False
        self._register_load_state_dict_pre_hook(_split_packed_projection)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> DPMultiheadAttention:
        """A copy of ``mha`` (same weights, device, dtype and settings)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise InvalidParameterError(
                "MultiheadAttention", "add_bias_kv/add_zero_attn", "both off for DP attention"
            )
        weight = mha.out_proj.weight
        # The initial weights are overwritten: leave the global generator where it was, so
        # replacing attention does not change any later random draw.
        with torch.random.fork_rng(devices=[]):
            new = cls(
                mha.embed_dim,
                mha.num_heads,
                dropout=mha.dropout,
                bias=mha.out_proj.bias is not None,
                batch_first=mha.batch_first,
                kdim=mha.kdim,
                vdim=mha.vdim,
            )
        new = new.to(device=weight.device, dtype=weight.dtype)
        new.load_state_dict(mha.state_dict())
        new.train(mha.training)
        return new

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if not self.batch_first:  # (T, B, d) → (B, T, d): the projections see batch-first rows
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        batch, steps, _ = query.shape
        sources = key.shape[1]
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        dropout = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if not need_weights and is_causal and key_padding_mask is None:
            # nn.MultiheadAttention's own fused call in this case (same kernel, same dropout)
            mixed = nnf.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            mask = _float_mask(attn_mask, key_padding_mask, is_causal, batch, steps, sources, q)
            if not need_weights:
                mixed = nnf.scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout)
            else:
                scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, T, S)
                weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
                if dropout > 0:
                    weights = nnf.dropout(weights, dropout)
                mixed = weights @ v
        out = self.out_proj(mixed.transpose(1, 2).reshape(batch, steps, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if weights is None:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, d) → (B, H, T, d_head)."""
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)


def _float_mask(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    is_causal: bool,
    batch: int,
    steps: int,
    sources: int,
    like: Tensor,
) -> Tensor | None:
    """One additive mask broadcastable to (B, H, T, S); boolean masks mean True = masked out,
    as in ``nn.MultiheadAttention``. ``is_causal`` without a mask builds the causal one."""
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(steps, sources, dtype=torch.bool, device=like.device).triu(1)
    total: Tensor | None = None
    if attn_mask is not None:
        mask = _additive(attn_mask, like)
        if mask.dim() == 3:  # (B·H, T, S)
            mask = mask.view(batch, -1, steps, sources)
        total = mask
    if key_padding_mask is not None:
        padding = _additive(key_padding_mask, like).view(batch, 1, 1, sources)
        total = padding if total is None else total + padding
    return total


def _additive(mask: Tensor, like: Tensor) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(
            mask, float("-inf")
        )
    return mask.to(like.dtype)


def _split_packed_projection(state: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
    """Load ``nn.MultiheadAttention`` keys: in_proj_weight/bias (packed q, k, v) or
    q/k/v_proj_weight (kdim ≠ embed_dim) into q_proj, k_proj, v_proj."""
    packed = state.pop(prefix + "in_proj_weight", None)
    if packed is not None:
        for name, part in zip("qkv", packed.chunk(3), strict=True):
            state[f"{prefix}{name}_proj.weight"] = part
    for name in "qkv":
        separate = state.pop(f"{prefix}{name}_proj_weight", None)
        if separate is not None:
            state[f"{prefix}{name}_proj.weight"] = separate
    bias = state.pop(prefix + "in_proj_bias", None)
    if bias is not None:
        for name, part in zip("qkv", bias.chunk(3), strict=True):
            state[f"{prefix}{name}_proj.bias"] = part


def replace_attention(model: nn.Module) -> nn.Module:
    """Swap every ``nn.MultiheadAttention`` in ``model`` (in place) for a
    :class:`DPMultiheadAttention` with the same weights; returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MultiheadAttention):
            setattr(model, name, DPMultiheadAttention.from_mha(child))
        else:
            replace_attention(child)
    return model
