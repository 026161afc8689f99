"""The embedded default dataset: scikit-learn's handwritten digits (works offline).

1,797 8×8 greyscale images of the digits 0–9 (the UCI "Optical Recognition of Handwritten Digits"
test set, shipped inside scikit-learn), pixel counts 0–16 scaled to [0, 1] and shaped
``(n, 1, 8, 8)``. A fixed, seeded, stratified split: 20 % test by default.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sklearn_digits

from deniable.data.dataset import ArrayDataset, Split
from deniable.data.splitting import stratified_split


def load_digits(*, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """The digits as a :class:`Split`; the same ``seed`` always gives the same split."""
    bunch = _sklearn_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    full = ArrayDataset(
        features=images,
        labels=labels,
        num_classes=10,
        name="digits",
        class_names=[str(d) for d in range(10)],
    )
    train, test = stratified_split(labels, test_fraction, seed)
    return Split(train=full.subset(train), test=full.subset(test))
