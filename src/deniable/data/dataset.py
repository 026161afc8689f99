"""In-memory datasets: features, labels, privacy-unit keys and group columns, validated once.

Every loader in :mod:`deniable.data` returns a :class:`Split` of two :class:`ArrayDataset`. The
trainer consumes ``features``/``labels`` (or :meth:`ArrayDataset.to_tensors`) and, for the
privacy unit, :meth:`ArrayDataset.unit_keys`: with ``keys=None`` every example is its own unit
(example-level DP, add/remove-one example); with ``keys`` all examples sharing a key form one
unit (user-level DP when the keys are user ids). ``groups`` hold sensitive attributes kept aside
for fairness evaluation and attribute-inference audits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from deniable.data.errors import DataError


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled dataset held as numpy arrays, checked for shape, range and finiteness.

    ``features``: float32, shape ``(n, *feature_shape)``; ``labels``: int64 in
    ``[0, num_classes)``, shape ``(n,)``; ``keys``: int64 privacy-unit ids per example (``None``:
    each example is its own unit); ``groups``: int64 codes per example for each sensitive column,
    decoded by ``group_names[column][code]``; ``feature_names``: one name per flattened feature
    (tabular data); ``class_names``: one name per class; ``notes``: preprocessing facts a report
    should show (rows dropped, statistics used).

    Inputs are converted to those dtypes; a float label that is not an integer is an error.
    """

    features: NDArray[np.float32]
    labels: NDArray[np.int64]
    num_classes: int
    name: str
    keys: NDArray[np.int64] | None = None
    groups: Mapping[str, NDArray[np.int64]] = field(default_factory=dict)
    group_names: Mapping[str, Sequence[str]] = field(default_factory=dict)
    feature_names: Sequence[str] | None = None
    class_names: Sequence[str] | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        features = np.ascontiguousarray(self.features, dtype=np.float32)
        if features.ndim < 2 or features.shape[0] < 1:
            raise DataError(
                f"dataset {self.name!r}: features need shape (n >= 1, *feature_shape), "
                f"got {features.shape}"
            )
        n = features.shape[0]
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", _codes(self.name, "labels", self.labels, n))
        if self.keys is not None:
            object.__setattr__(self, "keys", _codes(self.name, "keys", self.keys, n))
        groups = {col: _codes(self.name, f"group {col!r}", v, n) for col, v in self.groups.items()}
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "group_names", {k: list(v) for k, v in self.group_names.items()})
        self._check_classes()
        self._check_groups()
        self._check_finite()
        if self.feature_names is not None:
            names = list(self.feature_names)
            width = int(np.prod(features.shape[1:]))
            if len(names) != width:
                raise DataError(
                    f"dataset {self.name!r}: {len(names)} feature_names for {width} features"
                )
            object.__setattr__(self, "feature_names", names)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of one example's features, e.g. ``(1, 28, 28)`` or ``(104,)``."""
        return tuple(int(d) for d in self.features.shape[1:])

    def unit_keys(self) -> NDArray[np.int64]:
        """The privacy-unit id of each example: ``keys``, or ``0..n-1`` (one unit per example)."""
        if self.keys is not None:
            return self.keys
        return np.arange(len(self), dtype=np.int64)

    def subset(self, indices: ArrayLike) -> ArrayDataset:
        """The examples at ``indices`` (integer positions or a boolean mask), metadata kept."""
        idx = np.asarray(indices)
        if idx.dtype != np.bool_:
            idx = idx.astype(np.int64, copy=False)
        return replace(
            self,
            features=self.features[idx],
            labels=self.labels[idx],
            keys=None if self.keys is None else self.keys[idx],
            groups={col: codes[idx] for col, codes in self.groups.items()},
        )

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, labels)`` as a float32 and an int64 tensor sharing this dataset's memory."""
        return torch.from_numpy(self.features), torch.from_numpy(self.labels)

    def _check_classes(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int | np.integer):
            raise DataError(f"dataset {self.name!r}: num_classes must be an integer")
        if self.num_classes < 2:
            raise DataError(
                f"dataset {self.name!r}: num_classes must be >= 2, got {self.num_classes}"
            )
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if bad.size:
            raise DataError(
                f"dataset {self.name!r}: label {self.labels[bad[0]]} at row {bad[0]} is outside "
                f"[0, {self.num_classes}); labels must be 0..num_classes-1"
            )
        if self.class_names is not None:
            object.__setattr__(self, "class_names", list(self.class_names))
            if len(self.class_names) != self.num_classes:
                raise DataError(
                    f"dataset {self.name!r}: {len(self.class_names)} class_names for "
                    f"{self.num_classes} classes"
                )

    def _check_groups(self) -> None:
        for col, names in self.group_names.items():
            if col not in self.groups:
                raise DataError(f"dataset {self.name!r}: group_names has {col!r} but groups do not")
            codes = self.groups[col]
            bad = np.flatnonzero((codes < 0) | (codes >= len(names)))
            if bad.size:
                raise DataError(
                    f"dataset {self.name!r}: group {col!r} code {codes[bad[0]]} at row {bad[0]} "
                    f"has no name in group_names[{col!r}] ({len(names)} names)"
                )

    def _check_finite(self) -> None:
        flat = self.features.reshape(len(self), -1)
        finite = np.isfinite(flat)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise DataError(
                f"dataset {self.name!r}: feature {col} of row {row} is {flat[row, col]}; "
                "remove or impute non-finite values before training"
            )


@dataclass(frozen=True, eq=False)
class Split:
    """A train and a test :class:`ArrayDataset` with the same feature shape and classes."""

    train: ArrayDataset
    test: ArrayDataset

    def __post_init__(self) -> None:
        if self.train.feature_shape != self.test.feature_shape:
            raise DataError(
                f"dataset {self.train.name!r}: train features {self.train.feature_shape} and "
                f"test features {self.test.feature_shape} differ in shape"
            )
        if self.train.num_classes != self.test.num_classes:
            raise DataError(
                f"dataset {self.train.name!r}: train has {self.train.num_classes} classes and "
                f"test has {self.test.num_classes}"
            )

    @property
    def name(self) -> str:
        """The dataset's name (the training part's)."""
        return self.train.name

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of one example's features."""
        return self.train.feature_shape

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return self.train.num_classes


def _codes(name: str, what: str, values: ArrayLike, n: int) -> NDArray[np.int64]:
    """``values`` as an int64 vector of length ``n``; integer-valued floats are accepted."""
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise DataError(
            f"dataset {name!r}: {what} need shape ({n},) to match features, got {arr.shape}"
        )
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise DataError(
                f"dataset {name!r}: {what} must be integers, got {arr[bad[0]]} at row {bad[0]}"
            )
        return arr.astype(np.int64)
    raise DataError(f"dataset {name!r}: {what} must be integers, got dtype {arr.dtype}")
