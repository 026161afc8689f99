"""Weight-standardised convolutions and the GroupNorm Papernot CNNs: against hand computations,
per-example gradients against a loop of ordinary backward passes, and a private run by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from conftest import run_cli
from deniable.data import load_dataset
from deniable.errors import DeniableError, GhostUnsupportedError, InvalidParameterError
from deniable.grad import check_ghost_supported, compute_per_sample, ghost_norms
from deniable.models import GroupNormPapernotCNN, WSConv2d, build_model
from deniable.train.validate import validate_model


def hand_standardized(weight: Tensor, eps: float) -> Tensor:
    """Row by row: each output channel minus its mean, over sqrt(population variance + eps)."""
    rows = []
    for w in weight.detach():
        flat = w.flatten()
        mean = flat.sum() / flat.numel()
        var = ((flat - mean) ** 2).sum() / flat.numel()
        rows.append((w - mean) / (var + eps).sqrt())
    return torch.stack(rows)


def test_standardized_weight_has_zero_mean_and_unit_variance_per_output_channel() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(3, 5, 3, eps=1e-12).double()
    with torch.no_grad():  # channels of very different scale and offset
        conv.weight.mul_(torch.logspace(-1, 2, 5, dtype=torch.float64).view(5, 1, 1, 1)).add_(3.0)
    w = conv.standardized_weight().flatten(1)
    torch.testing.assert_close(w.mean(1), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(w.var(1, correction=0), torch.ones(5, dtype=torch.float64))
    # With the default eps the variance is var / (var + eps) exactly.
    conv.eps = 1e-5
    raw_var = conv.weight.flatten(1).var(1, correction=0)
    torch.testing.assert_close(
        conv.standardized_weight().flatten(1).var(1, correction=0), raw_var / (raw_var + 1e-5)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 1, "out_channels": 16, "kernel_size": 8, "stride": 2, "padding": 3},
        {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "dilation": 2, "groups": 2},
        {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "padding": "same", "bias": False},
    ],
)
def test_output_equals_conv2d_with_the_hand_standardized_weight(kwargs: dict) -> None:
    torch.manual_seed(1)
    conv = WSConv2d(**kwargs).double()
    x = torch.randn(4, kwargs["in_channels"], 12, 12, dtype=torch.float64)
    want = nnf.conv2d(
        x,
        hand_standardized(conv.weight, conv.eps),
        conv.bias,
        conv.stride,
        kwargs.get("padding", 0),
        conv.dilation,
        conv.groups,
    )
    torch.testing.assert_close(conv(x), want, atol=1e-12, rtol=1e-10)


def test_gradient_flows_through_the_standardization() -> None:
    torch.manual_seed(2)
    conv = WSConv2d(2, 3, 3).double()
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    target = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    (conv(x) - target).square().sum().backward()
    assert conv.weight.grad is not None
    # Reference: autograd through the hand formula with a fresh leaf.
    w = conv.weight.detach().clone().requires_grad_(True)
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    var = (w - mean).square().mean(dim=(1, 2, 3), keepdim=True)
    out = nnf.conv2d(x, (w - mean) / (var + conv.eps).sqrt(), conv.bias.detach())
    (out - target).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad)
    # The output does not change when a channel's weights all shift by one constant, so the
    # gradient is orthogonal to that direction: per output channel it sums to zero.
    g = conv.weight.grad.flatten(1)
    assert g.abs().max() > 1.0
    torch.testing.assert_close(g.sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)


def reference_grads(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Per-example gradients by one ordinary backward pass per example."""
    rows: dict[str, list[Tensor]] = {n: [] for n, _ in model.named_parameters()}
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        nnf.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            assert p.grad is not None, n
            rows[n].append(p.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    return {n: torch.stack(r) for n, r in rows.items()}


@pytest.mark.parametrize("name", ["papernot-gn-cnn", "papernot-ws-gn-cnn"])
def test_engine_per_example_gradients_match_a_loop(name: str) -> None:
    torch.manual_seed(3)
    model = build_model(name, (1, 28, 28), 10)
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 3, 9, 3, 1, 7])
    result = compute_per_sample(model, nnf.cross_entropy, x, y)
    assert result.method == "vmap"
    want = reference_grads(model, x, y)
    assert result.grads.keys() == want.keys()
    for key, grads in want.items():
        torch.testing.assert_close(result.grads[key], grads, atol=1e-5, rtol=1e-4, msg=key)


def test_ws_model_is_validated_and_ghost_norms_if_any_match_the_loop() -> None:
    torch.manual_seed(4)
    model = build_model("papernot-ws-gn-cnn", (1, 16, 16), 3)
    validate_model(model)  # WSConv2d is a verified type: no allow_unverified needed
    # WSConv2d overrides Conv2d.forward, so the Conv2d ghost rule (which would differentiate
    # with respect to the raw weight) must never apply to it: whatever ghost clipping does
    # with this model, its norms are the norms of the true per-example gradients.
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 2, 1, 2])
    try:
        check_ghost_supported(model)
    except GhostUnsupportedError:
        return
    want = torch.cat([g.flatten(1) for g in reference_grads(model, x, y).values()], 1)
    norms = ghost_norms(model, nnf.cross_entropy, x, y).norms
    torch.testing.assert_close(norms, want.norm(dim=1), atol=1e-5, rtol=1e-4)


def test_shapes_and_parameter_counts() -> None:
    gn = build_model("papernot-gn-cnn", (1, 28, 28), 10)
    ws = build_model("papernot-ws-gn-cnn", (1, 28, 28), 10)
    plain = build_model("papernot-cnn", (1, 28, 28), 10)
    count = sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in gn.parameters()) == count + 2 * 16 + 2 * 32  # GroupNorm γ, β
    assert sum(p.numel() for p in ws.parameters()) == count + 2 * 16 + 2 * 32
    assert [type(m) for m in ws.modules() if isinstance(m, nn.Conv2d)] == [WSConv2d, WSConv2d]
    assert not any(isinstance(m, WSConv2d) for m in gn.modules())
    assert ws(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert GroupNormPapernotCNN(3, 4, (16, 20))(torch.zeros(1, 3, 16, 20)).shape == (1, 4)


@pytest.mark.parametrize(
    ("build", "word"),
    [
        (lambda: WSConv2d(2, 3, 3, eps=0.0), "eps"),
        (lambda: WSConv2d(1, 3, 1), "kernel_size"),
        (lambda: build_model("papernot-ws-gn-cnn", (1, 8, 8), 10), "16×16"),
        (lambda: build_model("papernot-gn-cnn", (64,), 10), "(channels, height, width)"),
    ],
)
def test_bad_parameters_raise_one_line_errors(build: object, word: str) -> None:
    with pytest.raises(InvalidParameterError) as exc:
        build()  # type: ignore[operator]
    assert isinstance(exc.value, DeniableError) and "\n" not in str(exc.value)
    assert word in str(exc.value)


def _digits16(path: Path) -> Path:
    """The embedded digits upsampled 2× (each pixel a 2×2 block) to 16×16, as an npz file."""
    split = load_dataset("digits")
    x = np.concatenate([split.train.features, split.test.features])
    x = x.repeat(2, axis=2).repeat(2, axis=3)
    y = np.concatenate([split.train.labels, split.test.labels])
    np.savez(path, x=x, y=y)
    return path


def test_trains_privately_by_name_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _digits16(tmp_path / "digits16.npz")
    args = [
        "train", "--dataset", str(data), "--model", "papernot-ws-gn-cnn", "--epochs", "4",
        "--batch-size", "64", "--learning-rate", "0.5", "--target-epsilon", "8",
        "--out", str(tmp_path / "runs"), "--quiet", "--json",
    ]  # fmt: skip
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["epsilon"] <= 8.0 and result["delta"] == 1e-5
    assert result["per_sample"]["method"] in ("vmap", "ghost")
    assert result["test_accuracy"] > 0.5  # ten classes: chance is 0.1
