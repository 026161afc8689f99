"""Ghost norms and the ghost-clipped sum against vmap per-sample gradients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from deniable.errors import GhostUnsupportedError, UnsupportedModuleError
from deniable.grad import (
    check_ghost_supported,
    clip_and_sum,
    ghost_clipped_sum,
    ghost_norms,
    per_sample_gradients,
    per_sample_norms,
)
from deniable.grad.ghost_rules import kept_or_recomputed
from deniable.models import build_model

BATCH = 6


def ce_sum(outputs: Tensor, targets: Tensor) -> Tensor:
    return nnf.cross_entropy(outputs, targets, reduction="sum")


def ce_seq(outputs: Tensor, targets: Tensor) -> Tensor:
    """Token-level cross-entropy summed over a sequence: outputs (1, T, V), targets (1, T)."""
    return nnf.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="sum")


class MeanOver(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(self.dim)


class Twice(nn.Module):
    """One Linear applied twice: its gradient sums both calls."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


def _x(*shape: int) -> Tensor:
    return torch.randn(BATCH, *shape, dtype=torch.float64)


def _y(classes: int = 3, *shape: int) -> Tensor:
    return torch.randint(0, classes, (BATCH, *shape))


class Spare(nn.Module):
    """Two Linear layers of which the forward calls only one."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.used = nn.Linear(d_in, 3)
        self.spare = nn.Linear(d_in, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x)


Case = tuple[nn.Module, Tensor, Tensor, Callable[[Tensor, Tensor], Tensor]]


def _case(name: str) -> Case:
    torch.manual_seed(0)
    loss = ce_sum
    x, y = _x(5), _y()
    if name == "linear_2d":
        model: nn.Module = nn.Linear(5, 3)
    elif name == "linear_seq_gram":  # d_in·d_out = 48 ≥ T·(d_in + d_out) = 42
        model, x, y, loss = nn.Linear(8, 6), _x(3, 8), _y(6, 3), ce_seq
    elif name == "linear_seq_explicit":  # T² = 49 > d_in·d_out = 6
        model, x, y, loss = nn.Linear(2, 3), _x(7, 2), _y(3, 7), ce_seq
    elif name == "linear_seq_mid":  # T² = 16 ≤ d_in·d_out = 40 < T·(d_in + d_out) = 52
        model, x, y, loss = nn.Linear(8, 5), _x(4, 8), _y(5, 4), ce_seq
    elif name == "linear_4d":  # (B, 2, 3, d): steps are flattened
        model, x = nn.Sequential(nn.Linear(5, 3), MeanOver(1), MeanOver(1)), _x(2, 3, 5)
    elif name == "embedding_gram":  # T² = 25 ≤ V·d = 40
        model = nn.Sequential(nn.Embedding(10, 4, padding_idx=1), MeanOver(1), nn.Linear(4, 3))
        x = torch.randint(0, 10, (BATCH, 5))
        x[:, :2] = torch.tensor([3, 3])  # repeated tokens in every example
        x[0, 4] = 1
    elif name == "embedding_explicit":  # T² = 64 > V·d = 6
        model = nn.Sequential(nn.Embedding(3, 2), MeanOver(1), nn.Linear(2, 3))
        x = torch.randint(0, 3, (BATCH, 8))
    elif name == "layernorm":
        model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    elif name == "layernorm_seq":
        model = nn.Sequential(
            nn.Linear(5, 6), nn.LayerNorm((4, 6)), nn.LayerNorm(6), MeanOver(1), nn.Linear(6, 3)
        )
        x = _x(4, 5)
    elif name == "rmsnorm":
        model, x = nn.Sequential(nn.RMSNorm(5), MeanOver(1), nn.Linear(5, 3)), _x(3, 5)
    elif name == "groupnorm":
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.GroupNorm(2, 4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 3),
        )
        x = _x(2, 4, 4)
    elif name == "conv2d":
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 2, padding="same", groups=2, padding_mode="reflect"),
            nn.Conv2d(4, 2, 3, dilation=2, padding="valid", bias=False),
            nn.Flatten(),
            nn.Linear(8, 3),
        )
        x = _x(2, 11, 11)  # → 6×6 → 6×6 → 2×2
    elif name == "conv2d_wide":  # explicit kept, explicit recomputed (|W| > a + b), gram
        model = nn.Sequential(
            nn.Conv2d(3, 8, 1),
            nn.Tanh(),
            nn.Conv2d(8, 16, 3),
            nn.Tanh(),
            nn.Conv2d(16, 16, 3),
            nn.Flatten(),
            nn.Linear(64, 3),
        )
        x = _x(3, 6, 6)  # → 6×6 → 4×4 → 2×2
    elif name in ("papernot_cnn", "papernot_gn_cnn"):  # channels-last kernels and activations
        model = build_model(name.replace("_", "-"), (2, 16, 16), 3)
        x = _x(2, 16, 16)
    elif name == "conv1d":
        model = nn.Sequential(
            nn.Conv1d(3, 4, 3, stride=2, padding=2, padding_mode="circular"),
            nn.Conv1d(4, 4, 3, groups=4),
            nn.Flatten(),
            nn.Linear(16, 3),
        )
        x = _x(3, 9)
    elif name == "mlp":
        model = nn.Sequential(
            nn.Linear(5, 16),
            nn.ReLU(),
            nn.LayerNorm(16),
            nn.Dropout(0.2),
            nn.Linear(16, 16),
            nn.Tanh(),
            nn.Linear(16, 3),
        )
    elif name == "twice":
        model, x = Twice(), _x(4)
    else:
        raise AssertionError(name)
    return model.double().eval(), x, y, loss


NORM_CASES = [
    "linear_2d",
    "linear_seq_gram",
    "linear_seq_explicit",
    "linear_seq_mid",
    "linear_4d",
    "embedding_gram",
    "embedding_explicit",
    "layernorm",
    "layernorm_seq",
    "rmsnorm",
    "groupnorm",
    "conv2d",
    "conv2d_wide",
    "conv1d",
    "mlp",
    "twice",
]


@pytest.mark.parametrize("name", NORM_CASES)
def test_ghost_norms_equal_vmap_norms(name: str) -> None:
    model, x, y, loss = _case(name)
    grads, _ = per_sample_gradients(model, loss, x, y)
    got = ghost_norms(model, loss, x, y)
    torch.testing.assert_close(got.norms, per_sample_norms(grads), atol=1e-5, rtol=1e-7)
    assert set(got.layer_methods) == set(grads)


@pytest.mark.parametrize(
    ("name", "param", "method"),
    [
        ("linear_2d", "weight", "gram"),
        ("linear_seq_gram", "weight", "gram"),
        ("linear_seq_explicit", "weight", "explicit"),
        ("linear_seq_explicit", "bias", "explicit"),
        ("linear_seq_mid", "weight", "explicit"),  # Gram by the T² rule, explicit is cheaper
        ("embedding_gram", "0.weight", "gram"),
        ("embedding_explicit", "0.weight", "explicit"),
        ("conv2d_wide", "0.weight", "explicit"),
        ("conv2d_wide", "2.weight", "explicit"),
        ("conv2d_wide", "4.weight", "gram"),
    ],
)
def test_cost_based_choice_is_exposed(name: str, param: str, method: str) -> None:
    model, x, y, loss = _case(name)
    assert ghost_norms(model, loss, x, y).layer_methods[param] == method


@pytest.mark.parametrize("two_pass", [False, True], ids=["book-keeping", "two-pass"])
@pytest.mark.parametrize(
    "name",
    [
        "mlp",
        "conv2d",
        "conv2d_wide",
        "conv1d",
        "embedding_gram",
        "linear_seq_gram",
        "twice",
        "groupnorm",
    ],
)
def test_ghost_clipped_sum_equals_clip_and_sum_of_vmap_grads(name: str, two_pass: bool) -> None:
    model, x, y, loss = _case(name)
    grads, _ = per_sample_gradients(model, loss, x, y)
    norms = per_sample_norms(grads)
    ordered = norms.sort().values
    bound = float(ordered[2:4].mean())  # half the examples clipped, none near the bound
    want = clip_and_sum(grads, bound)
    got = ghost_clipped_sum(model, loss, x, y, bound, two_pass=two_pass)
    assert got.summed.keys() == want.summed.keys()
    for n in want.summed:
        torch.testing.assert_close(got.summed[n], want.summed[n], atol=1e-8, rtol=1e-6, msg=n)
    assert got.clipped_fraction == want.clipped_fraction
    assert got.sensitivity == bound
    losses = torch.stack([loss(model(x[i : i + 1]), y[i : i + 1]) for i in range(BATCH)])
    torch.testing.assert_close(got.losses, losses.detach())
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameters_are_left_out() -> None:
    model, x, y, loss = _case("mlp")
    model[0].requires_grad_(False)
    model[2].weight.requires_grad_(False)
    grads, _ = per_sample_gradients(model, loss, x, y)
    got = ghost_clipped_sum(model, loss, x, y, 0.5)
    assert set(got.summed) == set(grads) == set(got.layer_methods)
    want = clip_and_sum(grads, 0.5)
    for n in want.summed:
        torch.testing.assert_close(got.summed[n], want.summed[n])


def test_float32_norms_within_1e5() -> None:
    model, x, y, loss = _case("linear_seq_gram")
    model, x = model.float(), x.float()
    grads, _ = per_sample_gradients(model, loss, x, y)
    torch.testing.assert_close(
        ghost_norms(model, loss, x, y).norms, per_sample_norms(grads), atol=1e-5, rtol=1e-5
    )


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.attn(x, x, x)[0].mean(1))


class Positional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(3, 4))
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head((x + self.pos).mean(1))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.out = nn.Linear(4, 6, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.embed(x).mean(1))


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (Attention(), "`attn` (MultiheadAttention): uses out_proj's parameters"),
        (nn.Sequential(nn.LSTM(4, 3, batch_first=True)), "`0` (LSTM)"),
        (nn.Sequential(nn.BatchNorm1d(4)), "batch statistics mix examples"),
        (Tied(), "out.weight is tied to embed.weight"),
        (nn.Sequential(nn.Embedding(5, 3, scale_grad_by_freq=True)), "scale_grad_by_freq"),
    ],
)
def test_layers_without_a_rule_are_named(model: nn.Module, named: str) -> None:
    with pytest.raises(GhostUnsupportedError, match="vmap") as info:
        check_ghost_supported(model)
    assert named in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, UnsupportedModuleError)


class Doubled(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return 2 * super().forward(x)


class Scaled(nn.Module):
    """Own parameters and a child: the per-layer vmap rule covers only ``scale``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 4))
        self.inner = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.inner(x) * self.scale)


def _fallback_case(name: str) -> Case:
    torch.manual_seed(3)
    if name == "positional":
        model: nn.Module = Positional()
        x = _x(3, 4)
    elif name == "subclass":
        model, x = nn.Sequential(Doubled(5, 4), nn.Tanh(), nn.Linear(4, 3)), _x(5)
    elif name == "own_and_child":
        model, x = nn.Sequential(Scaled(), nn.Linear(4, 3)), _x(4)
    else:
        raise AssertionError(name)
    return model.double().eval(), x, _y(), ce_sum


@pytest.mark.parametrize(
    ("name", "vmapped"),
    [("positional", "pos"), ("subclass", "0.weight"), ("own_and_child", "0.scale")],
)
@pytest.mark.parametrize("two_pass", [False, True], ids=["book-keeping", "two-pass"])
def test_layers_without_a_rule_get_per_layer_vmap(name: str, vmapped: str, two_pass: bool) -> None:
    """Per-layer fallback (Bu et al.'s hybrid): vmap for that layer only, ghost for the rest;
    norms and the clipped sum equal whole-model vmap."""
    model, x, y, loss = _fallback_case(name)
    grads, _ = per_sample_gradients(model, loss, x, y)
    norms = per_sample_norms(grads)
    bound = float(norms.sort().values[2:4].mean())
    got = ghost_clipped_sum(model, loss, x, y, bound, two_pass=two_pass)
    torch.testing.assert_close(got.norms, norms)
    assert got.layer_methods[vmapped] == "vmap"
    assert set(got.layer_methods.values()) - {"vmap"}, "the other layers keep their ghost rules"
    want = clip_and_sum(grads, bound)
    for n in want.summed:
        torch.testing.assert_close(got.summed[n], want.summed[n], msg=n)


def test_per_layer_vmap_refuses_random_layers() -> None:
    """A re-drawn dropout mask would give the layer a gradient the forward never had."""

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x: Tensor) -> Tensor:
            return nnf.dropout(x * self.scale, 0.5, training=True)

    model = nn.Sequential(Noisy(), nn.Linear(4, 3)).double()
    with pytest.raises(GhostUnsupportedError, match="per-layer vmap of Noisy failed"):
        ghost_clipped_sum(model, ce_sum, _x(4), _y(), 1.0)


def test_parameters_used_outside_their_layer_are_refused() -> None:
    """A child whose weight the parent uses directly (as nn.MultiheadAttention does with
    out_proj) is never called: its hooks see nothing, so ghost clipping must refuse."""

    class Direct(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            return nnf.linear(x, self.proj.weight, self.proj.bias)

    for two_pass in (False, True):
        with pytest.raises(GhostUnsupportedError, match=r"`proj` \(Linear\) is never called"):
            ghost_clipped_sum(Direct().double(), ce_sum, _x(4), _y(), 1.0, two_pass=two_pass)


def _loop_clipped_sum(
    model: nn.Module, loss: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, bound: float
) -> tuple[dict[str, Tensor], Tensor]:
    """Brute force: one ordinary backward pass per example, each gradient clipped to the bound."""
    params = dict(model.named_parameters())
    summed = {n: torch.zeros_like(p) for n, p in params.items()}
    norms = []
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(loss(model(x[i : i + 1]), y[i : i + 1]), list(params.values()))
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        norms.append(norm)
        for name, g in zip(params, grads, strict=True):
            summed[name] += g * min(1.0, bound / float(norm))
    return summed, torch.stack(norms)


@pytest.mark.parametrize("two_pass", [False, True], ids=["book-keeping", "two-pass"])
@pytest.mark.parametrize(
    "name",
    [
        "conv2d_wide",
        "papernot_cnn",
        "papernot_gn_cnn",
        "conv1d",
        "linear_seq_gram",
        "linear_seq_explicit",
        "linear_seq_mid",
        "layernorm_seq",
        "embedding_gram",
    ],
)
def test_ghost_clipped_sum_equals_the_per_example_loop(name: str, two_pass: bool) -> None:
    model, x, y, loss = _case(name)
    _, norms = _loop_clipped_sum(model, loss, x, y, 1.0)
    bound = float(norms.sort().values[2:4].mean())
    want, want_norms = _loop_clipped_sum(model, loss, x, y, bound)
    got = ghost_clipped_sum(model, loss, x, y, bound, two_pass=two_pass)
    torch.testing.assert_close(got.norms, want_norms, atol=1e-5, rtol=0)
    for n in want:
        torch.testing.assert_close(got.summed[n], want[n], atol=1e-5, rtol=0, msg=n)


def test_explicit_gradients_are_formed_in_slices_no_larger_than_what_is_kept() -> None:
    """Per-example gradients bigger than the layer's a and b are formed a few rows at a time
    for the norms and dropped; the weighted sum is then the given recomputation."""
    torch.manual_seed(6)
    per = torch.randn(7, 5, 4)
    sizes: list[int] = []

    def per_example(rows: slice) -> Tensor:
        sizes.append(per[rows].shape[0])
        return per[rows]

    def recompute(w: Tensor) -> Tensor:
        return torch.tensordot(w, per, 1) + 100  # told apart from the kept contraction

    w = torch.rand(7)
    tight = kept_or_recomputed(per_example, 7, 20, 45, recompute)  # 2 rows of 20 fit in 45
    assert sizes == [2, 2, 2, 1]
    torch.testing.assert_close(tight.sq_norm, per.flatten(1).pow(2).sum(1))
    torch.testing.assert_close(tight.weighted_sum(w), torch.tensordot(w, per, 1) + 100)
    sizes.clear()
    roomy = kept_or_recomputed(per_example, 7, 20, 140, recompute)  # all 7 rows fit: kept
    assert sizes == [7]
    torch.testing.assert_close(roomy.weighted_sum(w), torch.tensordot(w, per, 1))
    sizes.clear()
    capped = kept_or_recomputed(per_example, 7, 20, 140, recompute, max_rows=3)  # still kept
    assert sizes == [3, 3, 1]
    torch.testing.assert_close(capped.sq_norm, per.flatten(1).pow(2).sum(1))
    torch.testing.assert_close(capped.weighted_sum(w), torch.tensordot(w, per, 1))
    sizes.clear()
    kept_or_recomputed(per_example, 7, 20, 45, recompute, max_rows=3)  # the memory cap is lower
    assert sizes == [2, 2, 2, 1]


def test_two_pass_leaves_unused_layers_grad_alone() -> None:
    """The first backward of two-pass mode differentiates a never-called layer's parameters
    through their ``.grad`` (to check they get none) and must restore what was there."""

    torch.manual_seed(5)
    model = Spare(4).double()
    sentinel = torch.full_like(model.spare.weight, 7.0)
    model.spare.weight.grad = sentinel
    x, y = _x(4), _y()
    got = ghost_clipped_sum(model, ce_sum, x, y, 0.5, two_pass=True)
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    want = clip_and_sum(grads, 0.5)
    for name in want.summed:
        torch.testing.assert_close(got.summed[name], want.summed[name])
    assert model.spare.weight.grad is sentinel and model.spare.bias.grad is None
    assert model.used.weight.grad is None


def test_in_place_change_of_a_layer_output_is_fine() -> None:
    """Output gradients are taken at the layer's own autograd edge, so a later in-place op
    (ReLU(inplace=True)) does not change them: same norms as the out-of-place model."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Linear(4, 3)).double()
    x, y = _x(5), _y()
    got = ghost_norms(model, ce_sum, x, y).norms
    model[1].inplace = False
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    torch.testing.assert_close(got, per_sample_norms(grads))


def test_in_place_change_of_a_layer_input_is_refused() -> None:
    class Later(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(5, 3)

        def forward(self, x: Tensor) -> Tensor:
            h = torch.tanh(x)
            out = self.proj(h)
            return out + h.mul_(0)[:, :3].detach()

    with pytest.raises(GhostUnsupportedError, match=r"input of `proj` was modified in place"):
        ghost_norms(Later().double(), ce_sum, _x(5), _y())


def test_layer_seeing_a_reshaped_batch_is_refused() -> None:
    class Folded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            return self.proj(x.flatten(0, 1)).view(x.shape[0], -1, 3).mean(1)

    with pytest.raises(GhostUnsupportedError, match=r"batch-first.*`proj`"):
        ghost_norms(Folded().double(), ce_sum, _x(2, 4), _y())


@pytest.mark.parametrize("two_pass", [False, True], ids=["book-keeping", "two-pass"])
def test_train_mode_dropout_uses_one_mask_for_both_passes(two_pass: bool) -> None:
    """With weights all 1 (C huge), the clipped sum is the ordinary batch gradient."""
    model, x, y, loss = _case("mlp")
    model.train()
    torch.manual_seed(5)
    got = ghost_clipped_sum(model, loss, x, y, 1e9, two_pass=two_pass)
    torch.manual_seed(5)
    loss(model(x), y).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(got.summed[n], p.grad, msg=n)


def test_layer_never_called_contributes_zero() -> None:
    torch.manual_seed(6)
    model, x, y = Spare(5).double(), _x(5), _y()
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    got = ghost_clipped_sum(model, ce_sum, x, y, 0.3)
    torch.testing.assert_close(got.norms, per_sample_norms(grads))
    assert torch.equal(got.summed["spare.weight"], torch.zeros(3, 5, dtype=torch.float64))
    torch.testing.assert_close(
        got.summed["used.bias"], clip_and_sum(grads, 0.3).summed["used.bias"]
    )


def test_the_step_falls_back_to_vmap_when_ghost_fails_at_run_time() -> None:
    """A failure only the forward reveals (here a weight used outside its layer) sends the step
    to whole-model vmap, once per model, with the same clipped sum."""
    from deniable.train import clipped_sum as module
    from deniable.train.clipped_sum import Clipping, clipped_sum

    class Direct(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            return nnf.linear(torch.tanh(x), self.proj.weight, self.proj.bias)

    torch.manual_seed(8)
    model, x, y = Direct().double(), _x(4), _y()
    out = clipped_sum(model, ce_sum, x, y, torch.arange(BATCH), clipping=Clipping(0.5))
    assert out.method == "vmap" and model in module._ghost_failed
    grads, _ = per_sample_gradients(model, ce_sum, x, y)
    want = clip_and_sum(grads, 0.5)
    for n in want.summed:
        torch.testing.assert_close(out.summed[n], want.summed[n], msg=n)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_group_norm_products_are_accurate_in_float32_with_a_large_mean(layout: str) -> None:
    """Σ_s x̂·g per channel: float32 inputs with mean 1000 and std 1 against float64
    ``group_norm`` (the channels-last path centres before the product: no cancellation)."""
    from deniable.grad.ghost_rules import _normalized_products

    torch.manual_seed(0)
    x, g = 1000 + torch.randn(4, 8, 6, 5), torch.randn(4, 8, 6, 5)
    want = (nnf.group_norm(x.double(), 2, eps=1e-5) * g.double()).sum((2, 3))
    if layout == "channels_last":
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    got = _normalized_products(x, g, 2, 1e-5)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-3 * float(want.abs().max()))
