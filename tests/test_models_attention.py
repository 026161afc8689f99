"""DPMultiheadAttention against nn.MultiheadAttention, and ghost clipping of transformers."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from deniable.errors import InvalidParameterError
from deniable.grad import (
    check_ghost_supported,
    clip_and_sum,
    ghost_clipped_sum,
    per_sample_gradients,
    per_sample_norms,
)
from deniable.models.attention import DPMultiheadAttention, replace_attention


def _pair(**kwargs: object) -> tuple[nn.MultiheadAttention, DPMultiheadAttention]:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, **kwargs).double()  # type: ignore[arg-type]
    if mha.in_proj_bias is not None:
        nn.init.normal_(mha.in_proj_bias)  # torch zeroes it: make the split testable
    return mha, DPMultiheadAttention.from_mha(mha)


def _inputs(batch_first: bool, steps: int = 5, sources: int = 5, kdim: int = 8) -> list[Tensor]:
    torch.manual_seed(1)
    shapes = [(3, steps, 8), (3, sources, kdim), (3, sources, kdim)]
    xs = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    return xs if batch_first else [x.transpose(0, 1) for x in xs]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("average", [True, False])
def test_same_function_as_multihead_attention(
    batch_first: bool, need_weights: bool, average: bool
) -> None:
    mha, ours = _pair(batch_first=batch_first)
    mha.eval(), ours.eval()
    q, k, v = _inputs(batch_first)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[1, 3:] = True
    kwargs = {"attn_mask": causal, "key_padding_mask": padding}
    want = mha(q, k, v, need_weights=need_weights, average_attn_weights=average, **kwargs)
    got = ours(q, k, v, need_weights=need_weights, average_attn_weights=average, **kwargs)
    torch.testing.assert_close(got[0], want[0])
    if need_weights:
        torch.testing.assert_close(got[1], want[1])
    else:
        assert got[1] is None and want[1] is None


def test_float_masks_per_head_masks_and_other_key_sizes() -> None:
    mha, ours = _pair(batch_first=True, kdim=6, vdim=6)
    q, k, v = _inputs(True, steps=4, sources=7, kdim=6)
    float_mask = torch.randn(4, 7, dtype=torch.float64)
    per_head = torch.rand(3 * 2, 4, 7) < 0.3
    per_head[..., 0] = False  # every query keeps one key
    for mask in (float_mask, per_head):
        torch.testing.assert_close(
            ours(q, k, v, attn_mask=mask)[0], mha(q, k, v, attn_mask=mask)[0]
        )


def test_dropout_on_attention_weights_matches_in_training() -> None:
    mha, ours = _pair(batch_first=True, dropout=0.3)
    q, k, v = _inputs(True)
    torch.manual_seed(4)
    want = mha(q, k, v, need_weights=True)[0]
    torch.manual_seed(4)
    got = ours(q, k, v, need_weights=True)[0]
    torch.testing.assert_close(got, want)


def test_state_dicts_of_multihead_attention_load() -> None:
    mha, _ = _pair(batch_first=True)
    fresh = DPMultiheadAttention(8, 2, batch_first=True).double()
    fresh.load_state_dict(mha.state_dict())
    q, k, v = _inputs(True)
    torch.testing.assert_close(fresh(q, k, v)[0], mha(q, k, v)[0])


def test_bias_kv_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="add_bias_kv"):
        DPMultiheadAttention.from_mha(nn.MultiheadAttention(8, 2, add_bias_kv=True))


class Encoder(nn.Module):
    """Token embedding → causal pre-norm encoder (2 layers) → mean-pooled classifier."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        layer = nn.TransformerEncoderLayer(
            8, 2, 16, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        return self.head(self.encoder(self.embed(ids), mask=mask, is_causal=True).mean(1))


def _ce(outputs: Tensor, targets: Tensor) -> Tensor:
    return nnf.cross_entropy(outputs, targets, reduction="sum")


@pytest.mark.parametrize("train", [False, True])
def test_replacing_attention_in_an_encoder_keeps_its_function(train: bool) -> None:
    """Train mode without dropout: with dropout the masks of the layers after attention differ
    (same distribution): bernoulli draws follow memory order, and nn.MultiheadAttention
    returns a (T, B, d)-strided view where ours is contiguous."""
    torch.manual_seed(2)
    model = Encoder(dropout=0.0).double().train(train)
    ids = torch.randint(0, 11, (4, 6))
    torch.manual_seed(9)
    want = model(ids)
    replace_attention(model)
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    torch.manual_seed(9)
    torch.testing.assert_close(model(ids), want)


@pytest.mark.parametrize("two_pass", [False, True], ids=["book-keeping", "two-pass"])
@pytest.mark.parametrize(
    ("steps", "qkv", "out"),
    [
        (3, "gram", "gram"),  # d·d = 64 ≥ T·2d = 48
        # q, k and v read one input (kept once): explicit only if 3d² < T·(d + 3d) = 160
        (5, "gram", "explicit"),
        (6, "gram", "explicit"),  # 192 = 192: nothing to save, Gram
        (7, "explicit", "explicit"),  # 192 < 224
    ],
)
def test_transformer_ghost_clipping_equals_vmap(
    two_pass: bool, steps: int, qkv: str, out: str
) -> None:
    """After replace_attention every layer has a ghost rule; norms and the clipped sum equal
    whole-model vmap to 1e-5 (relative), in both ghost modes, with the projections' norms by
    Gram (short sequences; q/k/v share one Gram of their input) or explicit per-example
    gradients."""
    torch.manual_seed(3)
    model = replace_attention(Encoder().double().eval())
    check_ghost_supported(model)
    ids, y = torch.randint(0, 11, (6, steps)), torch.randint(0, 3, (6,))
    grads, _ = per_sample_gradients(model, _ce, ids, y)
    norms = per_sample_norms(grads)
    bound = float(norms.median())
    got = ghost_clipped_sum(model, _ce, ids, y, bound, two_pass=two_pass)
    torch.testing.assert_close(got.norms, norms, rtol=1e-5, atol=1e-8)
    want = clip_and_sum(grads, bound)
    for name in want.summed:
        torch.testing.assert_close(got.summed[name], want.summed[name], rtol=1e-5, atol=1e-8)
    methods = got.layer_methods
    attention = "encoder.layers.0.self_attn"
    assert [methods[f"{attention}.{p}_proj.weight"] for p in "qkv"] == [qkv] * 3
    assert methods[f"{attention}.out_proj.weight"] == out
    assert "vmap" not in methods.values()


def test_train_mode_attention_dropout_ghost_sum_is_the_batch_gradient() -> None:
    """With C huge every weight is 1: the book-kept sum must equal an ordinary backward pass
    through the same dropout masks (attention dropout included)."""
    torch.manual_seed(5)
    model = replace_attention(Encoder(dropout=0.2).double().train())
    ids, y = torch.randint(0, 11, (5, 6)), torch.randint(0, 3, (5,))
    torch.manual_seed(6)
    got = ghost_clipped_sum(model, _ce, ids, y, 1e9)
    torch.manual_seed(6)
    _ce(model(ids), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(got.summed[name], p.grad, msg=name)


def test_replacing_attention_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(7)
    model = Encoder()
    state = torch.random.get_rng_state()
    replace_attention(model)
    assert torch.equal(torch.random.get_rng_state(), state)
