"""Activation functions for private training, chosen by name; no in-place variants.

:class:`TemperedSigmoid` is the family φ(x) = s·σ(T·x) − o of Papernot, Thakurta, Song, Chien &
Erlingsson (2021), "Tempered sigmoid activations for deep learning with differential privacy"
(AAAI): bounded activations keep gradient norms small, so less signal is lost to clipping; tanh is
s = 2, T = 2, o = 1.
"""

from __future__ import annotations

import torch
from torch import nn

from deniable.errors import InvalidParameterError, check_positive

ACTIVATIONS = ("relu", "tanh")


class TemperedSigmoid(nn.Module):
    """φ(x) = scale · sigmoid(temperature · x) − offset (defaults: exactly tanh)."""

    def __init__(self, scale: float = 2.0, temperature: float = 2.0, offset: float = 1.0) -> None:
        super().__init__()
        self.scale = check_positive("scale", scale)
        self.temperature = check_positive("temperature", temperature)
        self.offset = float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(self.temperature * x) - self.offset

    def extra_repr(self) -> str:
        return f"scale={self.scale}, temperature={self.temperature}, offset={self.offset}"


def activation(name: str) -> nn.Module:
    """A fresh activation module called ``name`` (one of :data:`ACTIVATIONS`), never in-place."""
    if name == "relu":
        return nn.ReLU(inplace=False)
    if name == "tanh":
        return nn.Tanh()
    raise InvalidParameterError("activation", name, f"one of {', '.join(ACTIVATIONS)}")
