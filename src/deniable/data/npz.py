"""Datasets stored as numpy ``.npz`` archives.

Accepted layouts: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (a given split), or ``x``, ``y``
(split here with a seed). Optional privacy-unit keys: ``keys`` (with ``x``/``y``) or
``keys_train``/``keys_test``. Features become float32, labels int64; ``num_classes`` is the
largest label + 1 unless a scalar ``num_classes`` array is stored. Pickled objects are refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deniable.data.dataset import ArrayDataset, Split
from deniable.data.errors import DataError, MissingDataError
from deniable.data.splitting import stratified_split, unit_split


def load_npz(path: Path | str, *, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The :class:`Split` stored in ``path`` (see the module docstring for the array names).

    With only ``x``/``y`` the split is stratified by label, or by unit when ``keys`` are given so
    that one unit's examples stay on one side.
    """
    path = Path(path)
    arrays = _read(path)
    name = path.stem
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        parts = {
            part: (arrays[f"x_{part}"], arrays[f"y_{part}"], arrays.get(f"keys_{part}"))
            for part in ("train", "test")
        }
    elif {"x", "y"} <= arrays.keys():
        labels = _integer_labels(path, "y", arrays["y"])
        keys = arrays.get("keys")
        if keys is not None:
            if keys.shape != labels.shape:
                raise DataError(f"{path}: keys has shape {keys.shape}, y has {labels.shape}")
            train, test = unit_split(np.asarray(keys), test_fraction, seed)
        else:
            train, test = stratified_split(labels, test_fraction, seed)
        parts = {
            part: (arrays["x"][idx], labels[idx], None if keys is None else keys[idx])
            for part, idx in (("train", train), ("test", test))
        }
    else:
        found = ", ".join(sorted(arrays)) or "none"
        raise DataError(
            f"{path} needs arrays x and y, or x_train, y_train, x_test and y_test; found: {found}"
        )
    labels_by_part = {part: _integer_labels(path, f"y_{part}", p[1]) for part, p in parts.items()}
    num_classes = _num_classes(path, arrays, list(labels_by_part.values()))
    datasets = {
        part: ArrayDataset(
            features=_features(path, part, x),
            labels=labels_by_part[part],
            num_classes=num_classes,
            name=name,
            keys=None if keys is None else keys.astype(np.int64),
        )
        for part, (x, _, keys) in parts.items()
    }
    return Split(train=datasets["train"], test=datasets["test"])


def _read(path: Path) -> dict[str, NDArray[np.generic]]:
    if not path.is_file():
        raise MissingDataError(f"NPZ file {path} not found: check the path or --data-dir")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a readable .npz archive (a zip of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({exc})") from exc
    except ValueError as exc:
        raise DataError(
            f"{path} holds pickled objects, which are refused; store plain arrays"
        ) from exc


def _features(path: Path, part: str, x: NDArray[np.generic]) -> NDArray[np.float32]:
    if x.dtype.kind not in "iufb" or x.ndim < 2:
        raise DataError(
            f"{path}: {part} features need a numeric array of shape (n, ...), "
            f"got {x.dtype} {x.shape}"
        )
    return x.astype(np.float32, copy=False)


def _integer_labels(path: Path, what: str, y: NDArray[np.generic]) -> NDArray[np.int64]:
    if (
        y.ndim != 1
        or y.dtype.kind not in "iuf"
        or (y.dtype.kind == "f" and not np.array_equal(y, np.round(y)))
    ):
        raise DataError(
            f"{path}: {what} must be a vector of integer labels, got {y.dtype} {y.shape}"
        )
    labels = y.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: {what} has negative label {labels.min()}; labels must be >= 0")
    return labels


def _num_classes(
    path: Path, arrays: dict[str, NDArray[np.generic]], labels: list[NDArray[np.int64]]
) -> int:
    largest = max(int(y.max()) for y in labels if y.size) + 1
    if "num_classes" not in arrays:
        return largest
    stored = arrays["num_classes"]
    if stored.shape != () or stored.dtype.kind not in "iu":
        raise DataError(f"{path}: num_classes must be a scalar integer array")
    return int(stored)
