"""Multinomial logistic regression: one linear layer on the flattened input."""

from __future__ import annotations

import torch
from torch import nn

from deniable.errors import check_count


class LogisticRegression(nn.Module):
    """Logits ``W·flatten(x) + b``; a convex baseline whose DP-SGD behaviour is well understood."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(
            check_count("in_features", in_features), check_count("num_classes", num_classes, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))
