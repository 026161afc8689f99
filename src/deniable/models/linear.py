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


class UnitBallLinear(nn.Module):
    """Logits of a linear model without bias on inputs projected onto the unit ball,
    ``x / max(1, ‖x‖₂)``: the model that output and objective perturbation release (their
    sensitivity analysis needs ‖x‖ ≤ 1, Chaudhuri et al. 2011).

    ``num_classes == 2`` keeps one weight vector w (logits ``[0, wᵀx]``), as the convex
    solvers do; k > 2 classes keep a (k, d) matrix.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        rows = 1 if check_count("num_classes", num_classes, 2) == 2 else num_classes
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(rows, check_count("in_features", in_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        flat = flat / flat.norm(dim=1, keepdim=True).clamp(min=1.0)
        logits = flat @ self.weight.T
        if self.num_classes == 2:
            return torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits
