"""Convolution patches and per-example convolution weight gradients by matrix products.

A convolution is a Linear layer applied at every output position t to the input patch a_t under
the kernel, so one example's weight gradient is Σ_t b_t a_tᵀ (b the output gradient) and the
Linear identities (Gram norms, explicit gradients) apply to the patches. Patches are read
through a strided view of the (padded) input and copied once; their entries are ordered as the
input lies in memory, (kh, kw, c) for channels-last inputs and (c, kh, kw) otherwise, so the
copy moves contiguous runs (``nnf.unfold`` always copies in (c, kh, kw) order: 2.4–2.6× the
time of this copy on the 1-channel MNIST input of an 8×8 kernel, measured). Rows are the
batch: nothing here mixes examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn


@dataclass(frozen=True)
class Patches:
    """Input patches of a convolution, (B, G, T, K), and how K is ordered.

    ``channels_last``: K is (kh, kw, c) if true, else (c, kh, kw) (the weight's own order).
    """

    values: Tensor
    channels_last: bool


def channels_last_input(x: Tensor) -> bool:
    """Whether the channels of ``x`` (B, C, *spatial) are its innermost dimension in memory
    (NHWC, or a (B, L, C) tensor transposed): its patches then copy in runs of C values."""
    return x.stride(1) == 1 and x.shape[1] > 1


def conv_pads(module: nn.Conv1d | nn.Conv2d) -> list[int]:
    """nnf.pad amounts (last spatial dim first) reproducing the conv's own padding."""
    pairs: list[tuple[int, int]] = []
    for i, (k, d) in enumerate(zip(module.kernel_size, module.dilation, strict=True)):
        if module.padding == "valid":
            pairs.append((0, 0))
        elif module.padding == "same":  # torch puts the odd padding unit on the right
            total = d * (k - 1)
            pairs.append((total // 2, total - total // 2))
        else:
            pad = module.padding[i]
            assert isinstance(pad, int)
            pairs.append((pad, pad))
    return [p for pair in reversed(pairs) for p in pair]


def _as_2d(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """The input padded as the conv pads it, as (B, C, H, W), and the kernel geometry
    (kh, kw, stride h, stride w, dilation h, dilation w)."""
    pads = conv_pads(module)
    kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(2)
        pads = [*pads, 0, 0]
        kernel, stride, dilation = (1, *kernel), (1, *stride), (1, *dilation)
    if any(pads):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = nnf.pad(x, pads, mode=mode)
    return x, (*kernel, *stride, *dilation)


def conv_patches(
    module: nn.Conv1d | nn.Conv2d, x: Tensor, channels_last: bool | None = None
) -> Patches:
    """The patches under the kernel at every output position, (B, G, T, C_in/G·kh·kw), in the
    order ``channels_last`` asks for (default: the one the input's layout copies fastest)."""
    if channels_last is None:
        channels_last = channels_last_input(x)
    x, (kh, kw, sh, sw, dh, dw) = _as_2d(module, x)
    batch, channels, height, width = x.shape
    groups = module.groups
    per_group = channels // groups
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    s_b, s_c, s_h, s_w = x.stride()
    if channels_last:
        shape = (batch, groups, out_h, out_w, kh, kw, per_group)
        strides = (s_b, s_c * per_group, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    else:
        shape = (batch, groups, out_h, out_w, per_group, kh, kw)
        strides = (s_b, s_c * per_group, s_h * sh, s_w * sw, s_c, s_h * dh, s_w * dw)
    view = x.as_strided(shape, strides, x.storage_offset())
    return Patches(view.reshape(batch, groups, out_h * out_w, -1), channels_last)


def output_rows(module: nn.Conv1d | nn.Conv2d, g: Tensor) -> Tensor:
    """The output gradient (B, C_out, *spatial) as (B, G, T, C_out/G): a view where the layout
    allows (channels-last 2-D outputs give (B, T, C_out) without a copy)."""
    rows = g.flatten(2).transpose(1, 2)  # (B, T, C_out): a view of NHWC, strided for NCHW
    return rows.unflatten(2, (module.groups, -1)).transpose(1, 2)


def per_example_weight_grads(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
    """(B, *weight.shape) per-example weight gradients Σ_t b_t a_tᵀ, one batched product."""
    patches = conv_patches(module, x)
    grads = torch.matmul(output_rows(module, g).transpose(2, 3), patches.values)  # (B,G,O,K)
    batch = grads.shape[0]
    weight_shape = module.weight.shape
    if not patches.channels_last:
        return grads.reshape(batch, *weight_shape)
    out_channels, per_group = weight_shape[:2]
    kh, kw = (1, *module.kernel_size) if isinstance(module, nn.Conv1d) else module.kernel_size
    grads = grads.reshape(batch, out_channels, kh, kw, per_group).permute(0, 1, 4, 2, 3)
    return grads.reshape(batch, *weight_shape)  # a view (Conv1d: drops kh = 1)
