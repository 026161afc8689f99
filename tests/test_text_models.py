"""Char models: shapes, causality, and exact per-sample gradients against a per-example loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from deniable.errors import DeniableError
from deniable.grad.per_sample import compute_per_sample
from deniable.text import (
    CharLSTM,
    CharTransformer,
    build_char_model,
    last_char_loss,
    sequence_loss,
)
from deniable.train.private import make_private
from deniable.train.validate import validate_model

LossFn = Callable[[Tensor, Tensor], Tensor]
VOCAB, T, B = 11, 7, 5


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "lstm": CharLSTM(VOCAB, embed_dim=6, hidden=8, layers=2),
        "transformer": CharTransformer(VOCAB, context=T, d_model=8, heads=2, layers=2),
    }


def _batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (B, T), generator=g), torch.randint(
        0, VOCAB, (B, T), generator=g
    )


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


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_outputs_are_next_character_logits(name: str) -> None:
    model = _models()[name]
    x, _ = _batch()
    assert model(x).shape == (B, T, VOCAB)
    assert model(x[:, :3]).shape == (B, 3, VOCAB)
    validate_model(model)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_models_are_causal(name: str, train_mode: bool) -> None:
    """Changing character t changes no output before t (eval mode takes torch's fast path)."""
    model = _models()[name]
    model.train(train_mode)
    x, _ = _batch()
    changed = x.clone()
    changed[:, 4] = (changed[:, 4] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert (before[:, 4:] - after[:, 4:]).abs().max() > 1e-4


def test_transformer_rejects_sequences_longer_than_its_context() -> None:
    model = _models()["transformer"]
    with pytest.raises(DeniableError, match="context"):
        model(torch.zeros(1, T + 1, dtype=torch.long))


@pytest.mark.parametrize(("name", "method"), [("lstm", "vmap"), ("transformer", "vmap")])
@pytest.mark.parametrize("loss_fn", [sequence_loss, last_char_loss])
def test_per_sample_gradients_match_a_per_example_loop(
    name: str, method: str, loss_fn: LossFn
) -> None:
    """Embedding, LSTM, attention, LayerNorm and Linear gradients, example by example."""
    model = _models()[name]
    x, y = _batch()
    result = compute_per_sample(model, loss_fn, x, y)
    assert result.method == method
    expected = reference_grads(model, loss_fn, x, y)
    assert set(result.grads) == set(expected)
    for param, g in expected.items():
        torch.testing.assert_close(result.grads[param], g, rtol=1e-5, atol=1e-6, msg=param)
    losses = torch.stack([loss_fn(model(x[i : i + 1]), y[i : i + 1]) for i in range(B)])
    torch.testing.assert_close(result.losses, losses.detach())


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_user_level_gradients_sum_a_users_windows(name: str) -> None:
    model = _models()[name]
    x, y = _batch()
    keys = torch.tensor([3, 1, 3, 3, 1])
    result = compute_per_sample(model, sequence_loss, x, y, keys=keys)
    expected = reference_grads(model, sequence_loss, x, y)
    assert result.units.tolist() == [1, 3]
    for param, g in expected.items():
        torch.testing.assert_close(result.grads[param][0], g[1] + g[4], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.grads[param][1], g[0] + g[2] + g[3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_make_private_trains_both_models(name: str) -> None:
    torch.manual_seed(0)
    model = build_char_model(name, VOCAB, T, width=8)
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, VOCAB, (40, T), generator=g)
    before = [p.detach().clone() for p in model.parameters()]
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        sequence_loss,
        x,
        torch.roll(x, -1, dims=1),
        batch_size=8,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
        keys=torch.arange(40).div(2, rounding_mode="floor").numpy(),
        seed=0,
    )
    for batch in private.batches(steps=3):
        private.step(batch)
    assert private.steps_done == 3
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert private.epsilon(1e-5).epsilon > 0


def test_build_char_model_names_the_choices() -> None:
    with pytest.raises(DeniableError, match="lstm, transformer"):
        build_char_model("gru", VOCAB, T)
    with pytest.raises(DeniableError, match="heads"):
        CharTransformer(VOCAB, context=T, d_model=6, heads=4)
