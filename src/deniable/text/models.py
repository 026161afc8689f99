"""Character language models for DP-SGD, and their per-example losses.

Both map a (B, T) batch of character ids to (B, T, V) next-character logits, and use only
modules whose per-sample gradients deniable verifies (Embedding, Linear, LayerNorm), no dropout
and no BatchNorm:

- :class:`CharLSTM`: Embedding → LSTM → Linear. The LSTM is :class:`~deniable.models.lstm.DPLSTM`
  (the same function as nn.LSTM, made of Linear layers), so per-sample gradients come from vmap
  or ghost clipping instead of the per-example loop nn.LSTM forces.
- :class:`CharTransformer`: token Embedding + learned position Embedding → pre-norm
  nn.TransformerEncoder with a causal mask (batch_first, dropout 0) → LayerNorm → Linear; its
  attention is :class:`~deniable.models.attention.DPMultiheadAttention` (nn.MultiheadAttention's
  function from Linear layers; its state dicts load), so ghost clipping covers every layer.

The losses receive the outputs of ONE example (1, T, V) and its targets (1, T) when DP-SGD
computes per-sample gradients, and a whole batch otherwise; they average over positions (and
examples), so one example's loss is its mean next-character cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from deniable.errors import InvalidParameterError, check_count
from deniable.models.attention import replace_attention
from deniable.models.lstm import DPLSTM


def sequence_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (nats) over every position: outputs (B, T, V), targets (B, T)."""
    return nnf.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


def last_char_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (nats) of the last position only (predict the char after a window)."""
    return nnf.cross_entropy(outputs[:, -1], targets[:, -1])


class CharLSTM(nn.Module):
    """Embedding → LSTM → Linear next-character model; (B, T) ids → (B, T, V) logits."""

    def __init__(
        self, vocab_size: int, *, embed_dim: int = 32, hidden: int = 128, layers: int = 1
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(check_count("vocab_size", vocab_size, 2), embed_dim)
        self.lstm = DPLSTM(embed_dim, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.lstm(self.embed(ids))[0])


class CharTransformer(nn.Module):
    """A small causal transformer; (B, T) ids with T ≤ ``context`` → (B, T, V) logits."""

    def __init__(
        self,
        vocab_size: int,
        *,
        context: int,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        ff_dim: int | None = None,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise InvalidParameterError("heads", heads, f"a divisor of d_model ({d_model})")
        self.context = check_count("context", context)
        self.embed = nn.Embedding(check_count("vocab_size", vocab_size, 2), d_model)
        self.position = nn.Embedding(context, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            ff_dim or 4 * d_model,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = replace_attention(
            nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        length = ids.shape[1]
        if length > self.context:
            raise InvalidParameterError(
                "sequence length", length, f"<= the model's context ({self.context})"
            )
        positions = torch.arange(length, device=ids.device)
        hidden = self.embed(ids) + self.position(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
        hidden = self.encoder(hidden, mask=mask, is_causal=True)
        return self.head(self.norm(hidden))


CHAR_MODELS: tuple[str, ...] = ("lstm", "transformer")
"""The model names :func:`build_char_model` knows."""


def build_char_model(
    name: str, vocab_size: int, context: int, *, width: int = 64, layers: int = 1
) -> nn.Module:
    """A freshly initialised char model by name (one of :data:`CHAR_MODELS`).

    ``width`` is the LSTM's hidden size (embeddings of width/2) or the transformer's d_model
    (4 heads, feed-forward 4·width); ``layers`` the number of LSTM or encoder layers.

    >>> build_char_model("transformer", 10, 8)(torch.zeros(2, 8, dtype=torch.long)).shape
    torch.Size([2, 8, 10])
    """
    check_count("width", width, 4)
    check_count("layers", layers)
    if name == "lstm":
        return CharLSTM(vocab_size, embed_dim=max(1, width // 2), hidden=width, layers=layers)
    if name == "transformer":
        return CharTransformer(vocab_size, context=context, d_model=width, heads=4, layers=layers)
    raise InvalidParameterError("model", name, f"one of {', '.join(CHAR_MODELS)}")
