"""Convolution patches by strided view and per-example conv weight gradients by matmul."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from deniable.grad import ghost_clipped_sum
from deniable.grad.conv_patches import (
    conv_pads,
    conv_patches,
    output_rows,
    per_example_weight_grads,
)

CONVS = {
    "strided_8x8_one_channel": lambda: nn.Conv2d(1, 4, 8, stride=2, padding=3),
    "4x4_stride_2": lambda: nn.Conv2d(6, 4, 4, stride=2),
    "groups_dilation_same": lambda: nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2),
    "reflect": lambda: nn.Conv2d(3, 2, (3, 2), padding=(1, 2), padding_mode="reflect"),
    "conv1d_circular": lambda: nn.Conv1d(3, 4, 3, stride=2, padding=2, padding_mode="circular"),
    "conv1d_groups": lambda: nn.Conv1d(4, 4, 3, groups=4),
}


def _input(module: nn.Module, layout: str) -> Tensor:
    torch.manual_seed(0)
    if isinstance(module, nn.Conv1d):
        x = torch.randn(3, 11, module.in_channels).double()  # (B, L, C) stored: channel stride 1
        return x.transpose(1, 2) if layout == "channels_last" else x.transpose(1, 2).contiguous()
    x = torch.randn(3, module.in_channels, 13, 12).double()
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _unfolded(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """Reference patches in the weight's (c, kh, kw) order, by ``nnf.unfold``."""
    kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    if isinstance(module, nn.Conv1d):
        x, kernel, stride, dilation = x.unsqueeze(2), (1, *kernel), (1, *stride), (1, *dilation)
        pads = [*conv_pads(module), 0, 0]
    else:
        pads = conv_pads(module)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    cols = nnf.unfold(nnf.pad(x, pads, mode=mode), kernel, dilation=dilation, stride=stride)
    return cols.view(x.shape[0], module.groups, -1, cols.shape[-1]).transpose(2, 3)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", CONVS)
def test_patches_match_unfold_in_either_order(name: str, layout: str) -> None:
    module = CONVS[name]().double()
    x = _input(module, layout)
    want = _unfolded(module, x)
    for order in (False, True):
        got = conv_patches(module, x, channels_last=order)
        assert got.channels_last is order and got.values.shape == want.shape
        if order:  # (kh, kw, c) → (c, kh, kw)
            kh, kw = (
                (1, *module.kernel_size) if isinstance(module, nn.Conv1d) else module.kernel_size
            )
            per_group = module.in_channels // module.groups
            got_values = got.values.unflatten(3, (kh, kw, per_group)).permute(0, 1, 2, 5, 3, 4)
            torch.testing.assert_close(got_values.flatten(3), want, rtol=0, atol=0)
        else:
            torch.testing.assert_close(got.values, want, rtol=0, atol=0)
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":  # no copy by nnf.pad
        expected = layout == "channels_last" and module.in_channels > 1
        assert conv_patches(module, x).channels_last is expected


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", CONVS)
def test_per_example_weight_grads_match_a_loop(name: str, layout: str) -> None:
    module = CONVS[name]().double()
    x = _input(module, layout)
    out = module(x)
    g = torch.randn_like(out)
    got = per_example_weight_grads(module, x, g)
    assert got.shape == (x.shape[0], *module.weight.shape)
    for i in range(x.shape[0]):
        (want,) = torch.autograd.grad(module(x[i : i + 1]), module.weight, g[i : i + 1])
        torch.testing.assert_close(got[i], want, rtol=0, atol=1e-10)
    rows = output_rows(module, g)
    assert rows.shape == (
        x.shape[0],
        module.groups,
        out[0, 0].numel(),
        module.out_channels // module.groups,
    )


class TwoLayouts(nn.Module):
    """One conv called on a channels-last tensor and on a row-major one: the Gram of its patches
    needs one order for both calls."""

    def __init__(self) -> None:
        super().__init__()
        # T = 2·9 over both calls on 5×5: T·(d_in + d_out) = 18·176 < d_in·d_out = 144·32
        self.conv = nn.Conv2d(16, 32, 3)

    def forward(self, x: Tensor) -> Tensor:
        first = self.conv(x.contiguous(memory_format=torch.channels_last))
        second = self.conv(x.flip(-1).contiguous())
        return (first + second).flatten(1)[:, :3]


def test_gram_over_calls_of_different_layouts_matches_the_loop() -> None:
    torch.manual_seed(0)
    model = TwoLayouts().double()
    x, y = torch.randn(4, 16, 5, 5).double(), torch.tensor([0, 2, 1, 1])

    def loss(out: Tensor, target: Tensor) -> Tensor:
        return nnf.cross_entropy(out, target, reduction="sum")

    got = ghost_clipped_sum(model, loss, x, y, 0.5)
    assert got.layer_methods["conv.weight"] == "gram"
    want = torch.zeros_like(model.conv.weight)
    for i in range(4):
        grads = torch.autograd.grad(loss(model(x[i : i + 1]), y[i : i + 1]), [*model.parameters()])
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        torch.testing.assert_close(got.norms[i], norm, rtol=0, atol=1e-10)
        want += grads[0] * min(1.0, 0.5 / float(norm))
    torch.testing.assert_close(got.summed["conv.weight"], want, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("layout", "method"), [("channels_last", "gram"), ("contiguous", "explicit")]
)
def test_gram_needs_twice_the_saving_on_row_major_inputs(layout: str, method: str) -> None:
    """Conv2d(16, 32, 4, stride 2) on 13×13: T·(d_in + d_out) = 25·288 < d_in·d_out = 8192, but
    not half of it; row-major patches of 16 channels copy in runs of 4 values."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 4, stride=2), nn.Flatten(), nn.Linear(800, 3))
    x = torch.randn(4, 16, 13, 13).double()
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    model = model.double()
    y = torch.tensor([0, 1, 2, 1])

    def loss(out: Tensor, target: Tensor) -> Tensor:
        return nnf.cross_entropy(out, target, reduction="sum")

    got = ghost_clipped_sum(model, loss, x, y, 0.05)
    assert got.layer_methods["0.weight"] == method
    for i in range(4):
        grads = torch.autograd.grad(loss(model(x[i : i + 1]), y[i : i + 1]), [*model.parameters()])
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        torch.testing.assert_close(got.norms[i], norm, rtol=0, atol=1e-10)


def test_patches_of_a_strided_view_with_an_offset() -> None:
    torch.manual_seed(0)
    module = nn.Conv2d(3, 4, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1)).double()
    base = torch.randn(5, 3, 20, 24).double()
    x = base[1:4, :, 2:, ::2]  # offset, row stride 24, column stride 2
    assert not x.is_contiguous() and x.storage_offset() > 0
    torch.testing.assert_close(conv_patches(module, x).values, _unfolded(module, x), rtol=0, atol=0)
    g = torch.randn_like(module(x))
    got = per_example_weight_grads(module, x, g)
    for i in range(3):
        (want,) = torch.autograd.grad(module(x[i : i + 1]), module.weight, g[i : i + 1])
        torch.testing.assert_close(got[i], want, rtol=0, atol=1e-10)
