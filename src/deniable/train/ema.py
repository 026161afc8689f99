"""Exponential moving average of the parameters (Polyak averaging), as De et al. (2022) use to
reach their DP-SGD results: θ̄_t = d_t·θ̄_{t−1} + (1 − d_t)·θ_t after every step.

Privacy: free. DP-SGD's accounting already covers releasing every iterate θ_1, …, θ_T; the
average is a function of them (post-processing). The warm-up d_t = min(d, (1 + t)/(10 + t))
(Tan & Le's EfficientNet recipe, also used by JAX Privacy) keeps early, badly-trained iterates
from dominating short runs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from deniable.errors import InvalidParameterError


class ParameterAverage:
    """The running average of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise InvalidParameterError("ema_decay", decay, "a number in (0, 1)")
        self.decay = decay
        self.updates = 0
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model: nn.Module) -> None:
        """Fold the model's current state into the average."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if value.is_floating_point():
                    self.average[name].mul_(d).add_(value.detach(), alpha=1 - d)
                else:
                    self.average[name].copy_(value)
        self.updates += 1

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged state."""
        out = copy.deepcopy(model)
        out.load_state_dict(self.average)
        return out

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, object]) -> None:
        average = state["average"]
        updates = state["updates"]
        assert isinstance(average, dict) and isinstance(updates, int)
        self.average = {k: v.clone() for k, v in average.items()}
        self.updates = updates
