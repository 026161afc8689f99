"""Data: validated in-memory datasets and loaders for the embedded default and real data.

- :class:`ArrayDataset` / :class:`Split`: features, labels, privacy-unit ``keys`` (user ids for
  user-level DP; ``None`` = one unit per example) and sensitive ``groups``, checked once.
- :func:`load_dataset`: by name (:data:`DATASETS`: ``digits`` embedded, ``mnist``,
  ``fashion-mnist``, ``adult``, ``german``) or path (``.npz``, image folder).
- Loaders: :func:`load_digits`, :func:`load_mnist` (IDX, :func:`read_idx`), :func:`load_adult`,
  :func:`load_german`, :func:`load_csv`, :func:`load_npz`, :func:`load_image_folder`.

Tabular loaders standardise with training-split statistics, non-privately (documented in
:mod:`deniable.data.tabular` and in each dataset's ``notes``).

>>> from deniable.data import load_dataset
>>> split = load_dataset("digits")
>>> len(split.train), len(split.test), split.feature_shape, split.num_classes
(1438, 359, (1, 8, 8), 10)
"""

from __future__ import annotations

from deniable.data.dataset import ArrayDataset, Split
from deniable.data.digits import load_digits
from deniable.data.errors import DataError, MissingDataError
from deniable.data.idx import load_mnist, parse_idx, read_idx
from deniable.data.image_folder import load_image_folder
from deniable.data.npz import load_npz
from deniable.data.registry import DATASETS, load_dataset
from deniable.data.splitting import stratified_split, unit_split
from deniable.data.tabular import load_adult, load_csv, load_german

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DataError",
    "MissingDataError",
    "Split",
    "load_adult",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_german",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "parse_idx",
    "read_idx",
    "stratified_split",
    "unit_split",
]
