"""Input-space canaries for auditing a training algorithm in one run.

A canary is an example the model would not fit unless it memorised it: here a real input with a
wrong, randomly chosen label (the "mislabelled example" canary of Jagielski, Ullman & Oprea 2020
and Steinke, Nasr & Jagielski 2023). Each of m canaries is included in the training set
independently with probability 1/2; after training, a canary's score is the model's negative
loss on its canary label, and the one-run bound (:mod:`deniable.audit.bounds`) turns the scores
and the coin flips into an ε lower bound for the training algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deniable.data.dataset import ArrayDataset
from deniable.errors import InvalidParameterError, check_count


@dataclass(frozen=True)
class CanarySet:
    """m canaries (inputs and their wrong labels) and which of them were included."""

    features: np.ndarray
    labels: np.ndarray
    included: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.size)


def mislabelled_canaries(source: ArrayDataset, count: int, *, seed: int) -> CanarySet:
    """``count`` inputs drawn from ``source`` without replacement, each relabelled uniformly to
    one of the other classes, each included with probability 1/2 (a fair coin per canary)."""
    check_count("canaries", count)
    if count > len(source):
        raise InvalidParameterError("canaries", count, f"<= {len(source)} (the source size)")
    rng = np.random.default_rng(seed)
    index = rng.choice(len(source), size=count, replace=False)
    shift = rng.integers(1, source.num_classes, size=count)
    labels = (source.labels[index] + shift) % source.num_classes
    included = rng.random(count) < 0.5
    return CanarySet(source.features[index].copy(), labels.astype(np.int64), included)


def with_canaries(train: ArrayDataset, canaries: CanarySet) -> ArrayDataset:
    """``train`` plus the included canaries (appended; each canary is its own privacy unit)."""
    if train.keys is not None:
        raise InvalidParameterError(
            "canaries", "with user keys", "used with example-level units only (for now)"
        )
    keep = canaries.included
    return ArrayDataset(
        features=np.concatenate([train.features, canaries.features[keep]]),
        labels=np.concatenate([train.labels, canaries.labels[keep]]),
        num_classes=train.num_classes,
        name=f"{train.name}+canaries",
    )


def canary_scores(model: nn.Module, canaries: CanarySet, batch_size: int = 1024) -> np.ndarray:
    """Score per canary: the negative cross-entropy of its canary label (higher = more likely
    that the canary was trained on)."""
    model.eval()
    x = torch.as_tensor(canaries.features)
    y = torch.as_tensor(canaries.labels)
    out = []
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            part = slice(start, start + batch_size)
            loss = nn.functional.cross_entropy(model(x[part]), y[part], reduction="none")
            out.append(-loss)
    return torch.cat(out).numpy().astype(np.float64)


def random_input_canaries(
    feature_shape: tuple[int, ...], num_classes: int, count: int, *, seed: int
) -> CanarySet:
    """``count`` out-of-distribution canaries: inputs uniform on [0, 1] with uniform random
    labels, each included with probability 1/2. Unlike relabelled real inputs they do not compete
    with the real data, so a model that memorises shows it clearly (more power per canary)."""
    check_count("canaries", count)
    rng = np.random.default_rng(seed)
    features = rng.random((count, *feature_shape)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=count).astype(np.int64)
    included = rng.random(count) < 0.5
    return CanarySet(features, labels, included)
