"""A multilayer perceptron on the flattened input, for tabular data and small images."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from deniable.errors import InvalidParameterError, check_count
from deniable.models.activations import activation as make_activation


class MLP(nn.Module):
    """Flatten, then ``hidden`` fully connected layers with ``activation``, then the logits.

    No normalisation layers, so per-example gradients are independent (DP-SGD compatible).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        widths = [check_count("in_features", in_features)]
        for width in hidden:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise InvalidParameterError("hidden", tuple(hidden), "a sequence of integers >= 1")
            widths.append(width)
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], check_count("num_classes", num_classes, 2)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
