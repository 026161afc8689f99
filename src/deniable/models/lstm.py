"""An LSTM made of Linear layers, so that DP-SGD gets its per-sample gradients fast.

``nn.LSTM`` runs as one fused kernel that torch.func cannot vmap, so per-sample gradients of a
model containing it fall back to a per-example loop (slow). :class:`DPLSTM` computes the same
function (Hochreiter & Schmidhuber 1997, in PyTorch's gate order i, f, g, o and with both of its
bias vectors):

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)
    c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g),    h_t = σ(o) ⊙ tanh(c_t)

with W_ih as one Linear applied to the whole sequence and W_hh as one Linear applied at every
step. Both are plain Linear layers, so per-sample gradients come from vmap or ghost clipping
(a layer called T times is handled as T more positions of a sequence). Opacus's ``DPLSTM`` takes
the same approach. :meth:`DPLSTM.from_lstm` copies an ``nn.LSTM``'s weights (tested equal).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from deniable.errors import InvalidParameterError, check_count


class DPLSTM(nn.Module):
    """Batch-first LSTM: (B, T, input_size) → ((B, T, hidden_size), (h_n, c_n)), as
    ``nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)``; zero initial state."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.hidden_size = check_count("hidden_size", hidden_size)
        self.num_layers = check_count("num_layers", num_layers)
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.ih = nn.ModuleList(nn.Linear(size, 4 * hidden_size) for size in sizes)
        self.hh = nn.ModuleList(nn.Linear(hidden_size, 4 * hidden_size) for _ in sizes)
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise InvalidParameterError(
                "input", tuple(x.shape), f"(batch, time, {self.input_size}) (batch first)"
            )
        finals_h, finals_c = [], []
        for ih, hh in zip(self.ih, self.hh, strict=True):
            # (B, T, 4H): the input part of every gate at once. Split with unbind, whose
            # backward stacks the T step gradients once; indexing projected[:, t] would have
            # each step's backward fill a zero (B, T, 4H) tensor (T² work, measured as most of
            # the step's time).
            projected = ih(x).unbind(1)
            h = x.new_zeros(x.shape[0], self.hidden_size)
            c = x.new_zeros(x.shape[0], self.hidden_size)
            outputs = []
            for step in projected:
                i, f, g, o = (step + hh(h)).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outputs.append(h)
            x = torch.stack(outputs, dim=1)
            finals_h.append(h)
            finals_c.append(c)
        return x, (torch.stack(finals_h), torch.stack(finals_c))

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM) -> DPLSTM:
        """A DPLSTM computing exactly what ``lstm`` (batch_first, unidirectional, with biases,
        no projection) computes."""
        if not lstm.batch_first or lstm.bidirectional or not lstm.bias or lstm.proj_size:
            raise InvalidParameterError(
                "lstm", repr(lstm), "batch_first, unidirectional, with biases, no projection"
            )
        out = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers)
        with torch.no_grad():
            for layer in range(lstm.num_layers):
                ih, hh = cast(nn.Linear, out.ih[layer]), cast(nn.Linear, out.hh[layer])
                ih.weight.copy_(getattr(lstm, f"weight_ih_l{layer}"))
                ih.bias.copy_(getattr(lstm, f"bias_ih_l{layer}"))
                hh.weight.copy_(getattr(lstm, f"weight_hh_l{layer}"))
                hh.bias.copy_(getattr(lstm, f"bias_hh_l{layer}"))
        return out
