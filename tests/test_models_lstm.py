"""DPLSTM: the same function as nn.LSTM, with per-sample gradients by vmap and ghost clipping
checked against a per-example loop of ordinary backward passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deniable.errors import InvalidParameterError
from deniable.grad.clip import clip_and_sum
from deniable.grad.ghost import ghost_clipped_sum
from deniable.grad.per_sample import compute_per_sample
from deniable.models.lstm import DPLSTM
from deniable.text.models import CharLSTM, sequence_loss


@pytest.mark.parametrize("layers", [1, 2])
def test_same_function_as_nn_lstm(layers: int) -> None:
    torch.manual_seed(0)
    reference = nn.LSTM(5, 7, num_layers=layers, batch_first=True)
    ours = DPLSTM.from_lstm(reference)
    x = torch.randn(3, 6, 5)
    expected, (h, c) = reference(x)
    out, (h_ours, c_ours) = ours(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h_ours, h, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c_ours, c, atol=1e-6, rtol=1e-5)
    # nn.LSTM's two bias vectors per layer only enter as their sum: DPLSTM keeps one
    assert (
        sum(p.numel() for p in ours.parameters())
        == sum(p.numel() for p in reference.parameters()) - layers * 4 * 7
    )


def test_split_state_dicts_load_nn_lstm_and_the_earlier_two_linear_layout() -> None:
    """nn.LSTM's keys and the earlier DPLSTM's (ih.{l} / hh.{l} Linear layers) load into the
    joined cells, inside a bigger model too (key prefixes), with the same function."""
    torch.manual_seed(4)
    reference = nn.LSTM(5, 7, num_layers=2, batch_first=True)
    x = torch.randn(3, 6, 5)
    expected = reference(x)[0]
    direct = DPLSTM(5, 7, num_layers=2)
    direct.load_state_dict(reference.state_dict())
    torch.testing.assert_close(direct(x)[0], expected, atol=1e-6, rtol=1e-5)

    earlier = {}  # the two-Linear layout, as saved under CharLSTM's "lstm." prefix
    for layer in range(2):
        for kind in ("ih", "hh"):
            for param in ("weight", "bias"):
                value = getattr(reference, f"{param}_{kind}_l{layer}")
                earlier[f"lstm.{kind}.{layer}.{param}"] = value.detach().clone()
    model = CharLSTM(11, embed_dim=5, hidden=7, layers=2)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("lstm.")}
    model.load_state_dict({**state, **earlier})
    torch.testing.assert_close(model.lstm(x)[0], expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(RuntimeError, match="bias_hh_l0"):  # half a bias pair is not guessed
        DPLSTM(5, 7).load_state_dict(
            {k: v for k, v in nn.LSTM(5, 7).state_dict().items() if k != "bias_ih_l0"}
        )


def loop_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(len(x)):
        model.zero_grad()
        sequence_loss(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append({n: p.grad.clone() for n, p in model.named_parameters()})  # type: ignore[union-attr]
    return out


def test_char_lstm_per_sample_gradients_by_vmap_equal_the_loop() -> None:
    torch.manual_seed(1)
    model = CharLSTM(11, embed_dim=6, hidden=8, layers=2)
    x, y = torch.randint(0, 11, (4, 9)), torch.randint(0, 11, (4, 9))
    result = compute_per_sample(model, sequence_loss, x, y)
    assert result.method == "vmap"
    for i, expected in enumerate(loop_gradients(model, x, y)):
        for name, grad in expected.items():
            torch.testing.assert_close(result.grads[name][i], grad, atol=1e-5, rtol=1e-5)


def test_char_lstm_ghost_clipping_equals_clipping_the_loop_gradients() -> None:
    """The recurrent Linear is called once per time step: ghost norms must count every call."""
    torch.manual_seed(2)
    model = CharLSTM(11, embed_dim=6, hidden=8)
    x, y = torch.randint(0, 11, (5, 7)), torch.randint(0, 11, (5, 7))
    grads = loop_gradients(model, x, y)
    stacked = {n: torch.stack([g[n] for g in grads]) for n in grads[0]}
    expected = clip_and_sum(stacked, 0.05)
    ghost = ghost_clipped_sum(model, sequence_loss, x, y, 0.05)
    assert expected.clipped_fraction > 0  # the clipping bites
    for name, value in expected.summed.items():
        torch.testing.assert_close(ghost.summed[name], value, atol=1e-5, rtol=1e-4)


def test_bad_inputs_are_one_line() -> None:
    with pytest.raises(InvalidParameterError, match="batch first"):
        DPLSTM(3, 4)(torch.zeros(2, 3))
    with pytest.raises(InvalidParameterError, match="batch_first"):
        DPLSTM.from_lstm(nn.LSTM(3, 4))
