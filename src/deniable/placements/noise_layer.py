"""A noise layer: clip each example's activations to L2 norm C and add N(0, σ²C²).

What it protects, exactly: the **input of each forward pass**, not the training set. Let h(x) be
the activations of the chosen layer for one input x, flattened. The layer outputs
clip_C(h(x)) + N(0, z²C²·I) with z = ``noise_multiplier``; everything after it is
post-processing. For any two inputs x, x', both clipped activations lie in the ball of radius C,
so they differ by at most 2C in L2: one pass is the Gaussian mechanism with sensitivity 2C and
noise zC, i.e. noise multiplier z/2 (for every relation: the "neighbour" of an input is any other
input). Event per pass: ``GaussianEvent(sigma=zC, sensitivity=2C, replace_one_sensitivity=2C)``;
k passes over the same input compose (``passes=k``). The guarantee is ``local-dp`` with the unit
"one forward-pass input": it bounds what the layer's output (and hence the model's output, or
activations sent to a server in split inference) reveals about that input.

It says nothing about the training data: the weights are trained and released without noise, so
a noise layer inside a model trained non-privately gives no central DP for the training set (for
that use DP-SGD or PATE). PixelDP-style robustness certificates (Lecuyer et al. 2019) bound the
layer's sensitivity to small input changes instead; this module states only the local-DP bound.

Noise is drawn every time the layer runs, in training and evaluation alike, from its own
``torch.Generator`` (seeded for reproducibility, or from ``os.urandom`` by default); it is
floating-point noise (not protected against Mironov 2012).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from deniable.errors import InvalidParameterError, check_count, check_positive
from deniable.events import GaussianEvent, Neighbouring, PrivacyEvent, SelfComposedEvent
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim

INPUT_UNIT = "one forward-pass input (local, inference time); not the training set"


class NoiseLayer(nn.Module):
    """Per-example clip to ``clip_norm`` (C) and add N(0, (``noise_multiplier``·C)²)."""

    guarantee = Guarantee.LOCAL_DP

    def __init__(
        self, *, clip_norm: float, noise_multiplier: float, seed: int | None = None
    ) -> None:
        super().__init__()
        self.clip_norm = check_positive("clip_norm", clip_norm)
        self.noise_multiplier = check_positive("noise_multiplier", noise_multiplier)
        if seed is not None:
            check_count("seed", seed, minimum=0)
        self.secure = seed is None
        self.generator = torch.Generator()
        self.generator.manual_seed(
            int.from_bytes(os.urandom(8), "little") >> 1 if seed is None else seed
        )

    @property
    def sigma(self) -> float:
        """The noise standard deviation zC."""
        return self.noise_multiplier * self.clip_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2:
            raise InvalidParameterError("activations", tuple(x.shape), "(batch, *features)")
        flat = x.reshape(x.shape[0], -1)
        norms = flat.norm(dim=1, keepdim=True)
        clipped = flat * torch.clamp(self.clip_norm / (norms + 1e-12), max=1.0)
        noise = torch.randn(
            clipped.shape, generator=self.generator, dtype=clipped.dtype, device="cpu"
        ).to(clipped.device)
        return (clipped + self.sigma * noise).reshape(x.shape)

    def event(self, passes: int = 1) -> PrivacyEvent:
        """The event of ``passes`` forward passes of one input: Gaussian, sensitivity 2C."""
        k = check_count("passes", passes)
        one = GaussianEvent(
            sigma=self.sigma,
            sensitivity=2 * self.clip_norm,
            replace_one_sensitivity=2 * self.clip_norm,
        )
        return one if k == 1 else SelfComposedEvent(one, k)

    def epsilon(self, delta: float, *, passes: int = 1, accountant: str = "pld") -> PrivacyClaim:
        """Local-DP ε at ``delta`` for one input seen ``passes`` times."""
        return claim(
            self.event(passes),
            delta,
            guarantee=self.guarantee,
            unit=INPUT_UNIT,
            accountant=accountant,
            relation=Neighbouring.REPLACE_ONE,
        )

    def extra_repr(self) -> str:
        return f"clip_norm={self.clip_norm}, noise_multiplier={self.noise_multiplier}"


def insert_noise_layer(
    model: nn.Module, after: str, layer: NoiseLayer
) -> torch.utils.hooks.RemovableHandle:
    """Apply ``layer`` to the output of ``model``'s submodule named ``after`` (a forward hook);
    returns the handle whose ``remove()`` takes it out again."""
    modules = dict(model.named_modules())
    if after not in modules or after == "":
        names = ", ".join(n for n in modules if n) or "none"
        raise InvalidParameterError("after", after, f"a submodule name ({names})")

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        return layer(output)

    return modules[after].register_forward_hook(hook)
