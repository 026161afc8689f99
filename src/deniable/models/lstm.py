"""An LSTM made of Linear layers, so that DP-SGD gets its per-sample gradients fast.

``nn.LSTM`` runs as one fused kernel that torch.func cannot vmap, so per-sample gradients of a
model containing it fall back to a per-example loop (slow). :class:`DPLSTM` computes the same
function (Hochreiter & Schmidhuber 1997, in PyTorch's gate order i, f, g, o):

    i, f, g, o = split(W [x_t; h_{t−1}] + b)
    c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g),    h_t = σ(o) ⊙ tanh(c_t)

with W = [W_ih  W_hh] one Linear layer per LSTM layer, applied at every step to the input and
the previous hidden state side by side, and b = b_ih + b_hh (nn.LSTM's two bias vectors only
ever appear as their sum). Per-sample gradients then come from vmap or ghost clipping, which
handles a layer called T times as T more positions of a sequence: one Gram of the gate
gradients per layer. Keeping W_ih and W_hh as two layers (Opacus's ``DPLSTM``, and ours until
the fifth throughput run) gives both the same output gradient, whose Gram and bias sums were
then computed twice; the joined layer is also faster without DP (one product per step instead
of a step product plus a slice of a sequence product; RESULTS.md). Clipping sees one bias
vector per layer, not two copies of its gradient. :meth:`DPLSTM.from_lstm` copies an
``nn.LSTM``'s weights (tested equal); ``nn.LSTM`` state dicts, and those of the earlier
two-Linear DPLSTM (checkpoints), load into it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from deniable.errors import InvalidParameterError, check_count


class DPLSTM(nn.Module):
    """Batch-first LSTM: (B, T, input_size) → ((B, T, hidden_size), (h_n, c_n)), as
    ``nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)``; zero initial state.

    ``cells[l]`` is layer l's ``nn.Linear(in_l + hidden_size, 4·hidden_size)`` on [x_t; h_{t−1}]
    (in_0 = input_size, else hidden_size)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.hidden_size = check_count("hidden_size", hidden_size)
        self.num_layers = check_count("num_layers", num_layers)
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.cells = nn.ModuleList(nn.Linear(size + hidden_size, 4 * hidden_size) for size in sizes)
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)
        self._register_load_state_dict_pre_hook(_join_lstm_weights)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise InvalidParameterError(
                "input", tuple(x.shape), f"(batch, time, {self.input_size}) (batch first)"
            )
        finals_h, finals_c = [], []
        for cell in self.cells:
            h = x.new_zeros(x.shape[0], self.hidden_size)
            c = x.new_zeros(x.shape[0], self.hidden_size)
            outputs = []
            # unbind: its backward stacks the T step gradients once (indexing x[:, t] would
            # have each step's backward fill a zero (B, T, d) tensor: T² work)
            for step in x.unbind(1):
                i, f, g, o = cell(torch.cat((step, h), dim=1)).chunk(4, dim=-1)
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
        no projection) computes: W = [W_ih W_hh], b = b_ih + b_hh per layer (``nn.LSTM`` state
        dicts load directly too)."""
        if not lstm.batch_first or lstm.bidirectional or not lstm.bias or lstm.proj_size:
            raise InvalidParameterError(
                "lstm", repr(lstm), "batch_first, unidirectional, with biases, no projection"
            )
        out = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers)
        out.load_state_dict(lstm.state_dict())
        return out


# (W_ih key, W_hh key, b_ih key, b_hh key) of layer {l}: nn.LSTM's names, and DPLSTM's before
# its two Linear layers per LSTM layer were joined into one
_SPLIT_LAYOUTS = (
    ("weight_ih_l{l}", "weight_hh_l{l}", "bias_ih_l{l}", "bias_hh_l{l}"),
    ("ih.{l}.weight", "hh.{l}.weight", "ih.{l}.bias", "hh.{l}.bias"),
)


def _join_lstm_weights(state: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
    """Load state dicts with W_ih and W_hh apart (``nn.LSTM``'s, or the earlier DPLSTM's) into
    ``cells.{l}``: weight [W_ih W_hh], bias b_ih + b_hh (the same function; tested)."""
    for layout in _SPLIT_LAYOUTS:
        layer = 0
        while prefix + layout[0].format(l=layer) in state:
            w_ih, w_hh, b_ih, b_hh = (prefix + key.format(l=layer) for key in layout)
            cell = f"{prefix}cells.{layer}."
            state[cell + "weight"] = torch.cat((state.pop(w_ih), state.pop(w_hh)), dim=1)
            if b_ih in state and b_hh in state:
                state[cell + "bias"] = state.pop(b_ih) + state.pop(b_hh)
            layer += 1

