"""Non-private supervised fitting used inside placements (PATE teachers and students, label-DP
stages): one short loop, seeded, leaving the global torch RNG untouched.

Privacy never comes from here: whatever this fits is either trained on one teacher's partition
(PATE), or on labels that already went through a mechanism (students, label DP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from deniable.errors import InvalidParameterError, check_count, check_positive
from deniable.models import build_model


@dataclass(frozen=True)
class Fit:
    """How to fit a model: ``model`` (a :data:`deniable.models.MODELS` name), Adam with
    ``learning_rate`` and ``weight_decay``, ``epochs`` of shuffled minibatches of ``batch_size``,
    initialisation and shuffling seeded by ``seed``."""

    model: str = "logreg"
    epochs: int = 60
    learning_rate: float = 0.05
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_count("epochs", self.epochs)
        check_positive("learning_rate", self.learning_rate)
        check_count("batch_size", self.batch_size)
        check_count("seed", self.seed, minimum=0)
        if self.weight_decay < 0:
            raise InvalidParameterError("weight_decay", self.weight_decay, ">= 0")


def fit_classifier(
    features: NDArray[np.float32],
    labels: NDArray[np.int64],
    *,
    feature_shape: tuple[int, ...],
    num_classes: int,
    fit: Fit,
    seed_offset: int = 0,
) -> nn.Module:
    """A freshly built ``fit.model`` trained on (``features``, ``labels``); in eval mode.

    With no examples it is returned untrained (its seeded initialisation): a function of the
    empty data, which is what PATE's analysis needs of a teacher with an empty partition.
    """
    seed = fit.seed + seed_offset
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(fit.model, feature_shape, num_classes)
    n = int(labels.shape[0])
    if n > 0:
        x = torch.as_tensor(np.asarray(features, dtype=np.float32)).reshape(n, *feature_shape)
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        optimizer = torch.optim.Adam(
            model.parameters(), lr=fit.learning_rate, weight_decay=fit.weight_decay
        )
        order_rng = np.random.default_rng(seed)
        model.train()
        for _ in range(fit.epochs):
            order = torch.as_tensor(order_rng.permutation(n))
            for start in range(0, n, fit.batch_size):
                idx = order[start : start + fit.batch_size]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    model.eval()
    return model


def predict_proba(
    model: nn.Module, features: NDArray[np.float32], batch_size: int = 1024
) -> NDArray[np.float64]:
    """Softmax outputs of ``model`` on ``features`` (rows are examples)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            out.append(torch.softmax(model(x[start : start + batch_size]), dim=1))
    return torch.cat(out).double().numpy()
