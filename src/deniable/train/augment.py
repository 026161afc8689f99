"""Augmentation multiplicity (De et al. 2022, "Unlocking High-Accuracy Differentially Private
Image Classification through Scale", §3.2): each sampled example enters the step as K randomly
augmented copies, and its gradient is the *mean* of the copies' gradients, clipped once.

Why it is free in privacy: the copies share the example's privacy unit, so clipping still bounds
the unit's whole contribution by C, and the step's event (sampling, sensitivity, noise) is the
same as without augmentation. The K copies only reduce the variance of the clipped signal.

How: the batch is repeated K times (``repeat_interleave``, unit ids too) and augmented; the loss
is divided by K, so the per-unit gradient that the clipped sum computes (the sum over the unit's
rows) is the mean over the copies. Augmentations here are random translations (``shift``: pad by
``pad`` with zeros and crop back, for digits) and random crops with horizontal flips
(``crop-flip``: reflection padding, for natural images). The randomness is the augmentation's
own seeded generator: it never depends on other examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional

from deniable.errors import InvalidParameterError, check_count

Kind = Literal["none", "shift", "crop-flip"]


@dataclass(frozen=True)
class Augmentation:
    """``multiplicity`` K copies of each example, each transformed by ``kind`` with ``pad``."""

    kind: Kind = "shift"
    multiplicity: int = 4
    pad: int = 2

    def __post_init__(self) -> None:
        check_count("augmentation_multiplicity", self.multiplicity)
        check_count("augmentation_pad", self.pad, minimum=0)
        if self.kind not in ("none", "shift", "crop-flip"):
            raise InvalidParameterError("augmentation", self.kind, "none, shift or crop-flip")

    def expand(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        units: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """K augmented copies of every row, with the targets and unit ids repeated alongside."""
        k = self.multiplicity
        x = inputs.repeat_interleave(k, dim=0)
        return (
            self.transform(x, generator),
            targets.repeat_interleave(k, dim=0),
            units.repeat_interleave(k, dim=0),
        )

    def transform(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random crop of the padded images (and a random horizontal flip for ``crop-flip``)."""
        if self.kind == "none" or images.numel() == 0:
            return images
        if images.dim() != 4:
            raise InvalidParameterError(
                "augmentation", self.kind, "image inputs shaped (batch, channels, height, width)"
            )
        mode = "reflect" if self.kind == "crop-flip" else "constant"
        out = random_crop(images, self.pad, generator, mode=mode)
        if self.kind == "crop-flip":
            flip = torch.rand(len(out), generator=generator) < 0.5
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        return out


def random_crop(
    images: torch.Tensor, pad: int, generator: torch.Generator, *, mode: str = "constant"
) -> torch.Tensor:
    """Pad every image by ``pad`` on each side and crop it back at a uniformly random offset in
    {0, …, 2·pad}² (one offset per image), without a Python loop over images."""
    if pad == 0:
        return images
    n, c, h, w = images.shape
    padded = functional.pad(images, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channel = torch.arange(c)[None, :, None, None]
    return padded[batch, channel, rows, cols]
