"""Per-sample gradients against a slow reference: one ordinary backward pass per example."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from deniable.errors import DeniableError
from deniable.grad import compute_per_sample, per_sample_gradients, per_sample_norms
from deniable.models.standardized import WSConv2d
from deniable.train.validate import VERIFIED_MODULES

LossFn = Callable[[Tensor, Tensor], Tensor]
BATCH = 5


def ce_sum(outputs: Tensor, targets: Tensor) -> Tensor:
    return nnf.cross_entropy(outputs, targets, reduction="sum")


def mse_mean(outputs: Tensor, targets: Tensor) -> Tensor:
    return nnf.mse_loss(outputs, targets, reduction="mean")


def reference_grads(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """g_i by loss.backward() on example i alone; zeros for parameters it does not reach."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    rows: dict[str, list[Tensor]] = {n: [] for n, _ in named}
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in named:
            rows[n].append(torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    return {n: torch.stack(r) for n, r in rows.items()}


class MeanOver(nn.Module):
    """Average over one axis (pooling a sequence)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(self.dim)


class Recurrent(nn.Module):
    """An RNN (batch_first) followed by a linear head on the mean output."""

    def __init__(self, rnn: nn.Module, hidden: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0].mean(1))


class Cell(nn.Module):
    """An RNN cell unrolled over the steps of a (B, T, d) input."""

    def __init__(self, cell: nn.RNNCellBase, hidden: int) -> None:
        super().__init__()
        self.cell = cell
        self.head = nn.Linear(hidden, 3)

    def forward(self, x: Tensor) -> Tensor:
        state: Tensor | tuple[Tensor, Tensor] | None = None
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        out = state[0] if isinstance(state, tuple) else state
        assert out is not None
        return self.head(out)


class SelfAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def _classes(n: int = BATCH) -> Tensor:
    return torch.randint(0, 3, (n,))


def _seq(d: int = 4, t: int = 3) -> Tensor:
    return torch.randn(BATCH, t, d, dtype=torch.float64)


Case = tuple[nn.Module, Tensor, Tensor, LossFn]


def _case(name: str) -> Case:
    torch.manual_seed(0)
    x: Tensor
    if name == "linear":
        model: nn.Module = nn.Linear(5, 3)
        x = torch.randn(BATCH, 5, dtype=torch.float64)
    elif name == "mlp":
        model = nn.Sequential(
            nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
        )
        x = torch.randn(BATCH, 6, dtype=torch.float64)
    elif name == "mlp_regression":
        model = nn.Sequential(nn.Linear(4, 6), nn.ELU(), nn.Linear(6, 2))
        x = torch.randn(BATCH, 4, dtype=torch.float64)
        y = torch.randn(BATCH, 2, dtype=torch.float64)
        return model.double().eval(), x, y, mse_mean
    elif name == "conv1d":
        model = nn.Sequential(
            nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3)
        )
        x = torch.randn(BATCH, 2, 8, dtype=torch.float64)
    elif name == "conv2d":
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 3)
        )
        x = torch.randn(BATCH, 2, 6, 6, dtype=torch.float64)
    elif name == "ws_conv2d":
        model = nn.Sequential(
            WSConv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(144, 3)
        )
        x = torch.randn(BATCH, 2, 6, 6, dtype=torch.float64)
    elif name == "conv3d":
        model = nn.Sequential(nn.Conv3d(1, 2, 2), nn.Flatten(), nn.Linear(16, 3))
        x = torch.randn(BATCH, 1, 3, 3, 3, dtype=torch.float64)
    elif name == "conv_transpose":
        model = nn.Sequential(
            nn.ConvTranspose2d(2, 2, 2, stride=2),  # (B, 2, 1, 2) → (B, 2, 2, 4)
            nn.Flatten(2),
            nn.ConvTranspose1d(2, 1, 3),  # (B, 2, 8) → (B, 1, 10)
            nn.Flatten(),
            nn.Linear(10, 3),
        )
        x = torch.randn(BATCH, 2, 1, 2, dtype=torch.float64)
    elif name == "embedding":
        model = nn.Sequential(nn.Embedding(11, 4, padding_idx=0), MeanOver(1), nn.Linear(4, 3))
        x = torch.randint(0, 11, (BATCH, 6))
        x[0, :2] = 0
    elif name == "layernorm":
        model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 3))
        x = torch.randn(BATCH, 5, dtype=torch.float64)
    elif name == "rmsnorm":
        model = nn.Sequential(nn.Linear(5, 6), nn.RMSNorm(6), nn.Linear(6, 3))
        x = torch.randn(BATCH, 5, dtype=torch.float64)
    elif name == "groupnorm":
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)
        )
        x = torch.randn(BATCH, 2, 4, 4, dtype=torch.float64)
    elif name == "instancenorm":
        model = nn.Sequential(
            nn.Conv1d(2, 3, 1),
            nn.InstanceNorm1d(3, affine=True),  # (B, 3, 4)
            nn.Unflatten(2, (2, 2)),
            nn.InstanceNorm2d(3, affine=True),  # (B, 3, 2, 2)
            nn.Unflatten(3, (2, 1)),
            nn.InstanceNorm3d(3, affine=True),  # (B, 3, 2, 2, 1)
            nn.Flatten(),
            nn.Linear(12, 3),
        )
        x = torch.randn(BATCH, 2, 4, dtype=torch.float64)
    elif name == "prelu":
        model = nn.Sequential(nn.Linear(4, 5), nn.PReLU(), nn.Linear(5, 3))
        x = torch.randn(BATCH, 4, dtype=torch.float64)
    elif name == "lstm":
        model, x = Recurrent(nn.LSTM(4, 5, batch_first=True), 5), _seq()
    elif name == "gru":
        model, x = Recurrent(nn.GRU(4, 5, num_layers=2, batch_first=True), 5), _seq()
    elif name == "rnn":
        model, x = Recurrent(nn.RNN(4, 5, batch_first=True), 5), _seq()
    elif name == "lstm_cell":
        model, x = Cell(nn.LSTMCell(4, 5), 5), _seq()
    elif name == "gru_cell":
        model, x = Cell(nn.GRUCell(4, 5), 5), _seq()
    elif name == "rnn_cell":
        model, x = Cell(nn.RNNCell(4, 5), 5), _seq()
    elif name == "attention":
        model, x = SelfAttention(4), _seq()
    elif name == "transformer":
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        model = nn.Sequential(layer, MeanOver(1), nn.Linear(8, 3))
        x = _seq(d=8, t=4)
    else:
        raise AssertionError(name)
    return model.double().eval(), x, _classes(), ce_sum


CASES = [
    "linear",
    "mlp",
    "mlp_regression",
    "conv1d",
    "conv2d",
    "ws_conv2d",
    "conv3d",
    "conv_transpose",
    "embedding",
    "layernorm",
    "rmsnorm",
    "groupnorm",
    "instancenorm",
    "prelu",
    "lstm",
    "gru",
    "rnn",
    "lstm_cell",
    "gru_cell",
    "rnn_cell",
    "attention",
    "transformer",
]
LOOP_CASES = {"lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell"}


def _assert_close(got: dict[str, Tensor], want: dict[str, Tensor], atol: float = 1e-8) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].shape == want[name].shape, name
        torch.testing.assert_close(got[name], want[name], atol=atol, rtol=1e-6, msg=name)


@pytest.mark.parametrize("name", CASES)
def test_matches_per_example_loop(name: str) -> None:
    model, x, y, loss_fn = _case(name)
    result = compute_per_sample(model, loss_fn, x, y)
    _assert_close(result.grads, reference_grads(model, loss_fn, x, y))
    assert result.method == ("loop" if name in LOOP_CASES else "vmap")
    assert torch.equal(result.units, torch.arange(BATCH))
    losses = torch.stack([loss_fn(model(x[i : i + 1]), y[i : i + 1]) for i in range(BATCH)])
    torch.testing.assert_close(result.losses, losses.detach())


def test_every_verified_module_type_is_tested() -> None:
    seen = set()
    for name in CASES:
        seen |= {type(m) for m in _case(name)[0].modules()}
    missing = [cls.__name__ for cls in VERIFIED_MODULES if cls not in seen]
    assert not missing, f"verified but never checked against the per-example loop: {missing}"


def test_float32_mlp_within_1e5() -> None:
    model, x, y, loss_fn = _case("mlp")
    model, x = model.float(), x.float()
    grads, _ = per_sample_gradients(model, loss_fn, x, y)
    _assert_close(grads, reference_grads(model, loss_fn, x, y), atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "embedding", "gru"])
def test_keys_sum_examples_of_a_unit(name: str) -> None:
    model, x, y, loss_fn = _case(name)
    x, y = torch.cat([x, x[:2]]), torch.cat([y, y[:2]])
    keys = torch.tensor([3, 1, 3, 0, 9, 1, 3])
    grads, units = per_sample_gradients(model, loss_fn, x, y, keys=keys)
    assert units.tolist() == [0, 1, 3, 9]
    per_example = reference_grads(model, loss_fn, x, y)
    want = {n: torch.stack([g[keys == k].sum(0) for k in units]) for n, g in per_example.items()}
    _assert_close(grads, want)


def test_unit_losses_are_summed_per_key() -> None:
    model, x, y, loss_fn = _case("linear")
    keys = torch.tensor([7, 7, 2, 7, 2])
    result = compute_per_sample(model, loss_fn, x, y, keys=keys)
    single = compute_per_sample(model, loss_fn, x, y).losses
    torch.testing.assert_close(
        result.losses, torch.stack([single[2] + single[4], single[[0, 1, 3]].sum()])
    )


def test_frozen_parameters_and_buffers_pass_through() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Linear(4, 5)
            self.second = nn.Linear(5, 3)
            self.register_buffer("scale", torch.tensor(0.5))
            self.first.weight.requires_grad_(False)

        def forward(self, x: Tensor) -> Tensor:
            return self.second(torch.tanh(self.first(x)) * self.scale)

    torch.manual_seed(1)
    model = Scaled().double()
    x, y = torch.randn(BATCH, 4, dtype=torch.float64), _classes()
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    assert set(grads) == {"first.bias", "second.weight", "second.bias"}
    _assert_close(grads, reference_grads(model, ce_sum, x, y))


def test_tied_weights_get_the_sum_of_both_uses() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(6, 4)
            self.out = nn.Linear(4, 6, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, x: Tensor) -> Tensor:
            return self.out(self.embed(x).mean(1))

    torch.manual_seed(2)
    model = Tied().double()
    x, y = torch.randint(0, 6, (BATCH, 3)), torch.randint(0, 6, (BATCH,))
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    assert set(grads) == {"embed.weight"}
    _assert_close(grads, reference_grads(model, ce_sum, x, y))


def test_train_mode_dropout_draws_a_mask_per_example() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    x = torch.randn(1, 8).expand(BATCH, 8).contiguous()
    y = torch.zeros(BATCH, dtype=torch.long)
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    first = grads["0.weight"]
    assert not all(torch.equal(first[0], first[i]) for i in range(1, BATCH))


def test_chunked_vmap_gives_the_same_result() -> None:
    model, x, y, loss_fn = _case("conv2d")
    whole, _ = per_sample_gradients(model, loss_fn, x, y)
    chunked, _ = per_sample_gradients(model, loss_fn, x, y, chunk_size=2)
    _assert_close(chunked, whole, atol=1e-12)


def test_norms_are_flat_l2_over_all_parameters() -> None:
    model, x, y, loss_fn = _case("mlp")
    grads, _ = per_sample_gradients(model, loss_fn, x, y)
    want = torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=1)
    torch.testing.assert_close(per_sample_norms(grads), want)


def test_non_scalar_loss_is_refused_with_advice() -> None:
    model, x, y, _ = _case("linear")

    def per_class(out: Tensor, target: Tensor) -> Tensor:
        return nnf.cross_entropy(out, target, reduction="none").repeat(2)

    with pytest.raises(DeniableError, match="reduction='sum' or 'mean'"):
        per_sample_gradients(model, per_class, x, y)


def test_bad_batches_are_refused() -> None:
    model, x, y, loss_fn = _case("linear")
    with pytest.raises(DeniableError, match="targets"):
        per_sample_gradients(model, loss_fn, x, y[:2])
    with pytest.raises(DeniableError, match="keys"):
        per_sample_gradients(model, loss_fn, x, y, keys=torch.zeros(BATCH))
    with pytest.raises(DeniableError, match="trainable"):
        per_sample_gradients(model.requires_grad_(False), loss_fn, x, y)


def test_model_vmap_cannot_run_falls_back_to_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            steps = int(x.abs().sum() > 1) + 1  # Python control flow on a value: vmap refuses
            return self.proj(x) * steps

    torch.manual_seed(4)
    model = DataDependent().double()
    x, y = torch.randn(BATCH, 4, dtype=torch.float64), _classes()
    result = compute_per_sample(model, ce_sum, x, y)
    assert result.method == "loop"
    assert "per-example loop" in caplog.text
    _assert_close(result.grads, reference_grads(model, ce_sum, x, y))
    assert compute_per_sample(model, ce_sum, x, y).method == "loop"
